"""Routes of the tenancy management API under /api/manage/."""

from rest_framework.routers import SimpleRouter

from tenancy.api import views

app_name = "tenancy-api"

router = SimpleRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")
router.register("plans", views.PlanViewSet, basename="plan")
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")
router.register("identity-providers", views.IdentityProviderViewSet, basename="identity-provider")

urlpatterns = router.urls
