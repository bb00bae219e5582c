"""Routes of the alerts management API under /api/manage/."""

from rest_framework.routers import SimpleRouter

from alerts.api import views

app_name = "alerts-api"

router = SimpleRouter()
router.register("notification-rules", views.NotificationRuleViewSet, basename="notificationrule")
router.register("alerts", views.AlertViewSet, basename="alert")

urlpatterns = router.urls
