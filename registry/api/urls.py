"""Routes of the registry's management API under /api/manage/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from registry.api import views

app_name = "registry-api"

router = SimpleRouter()
router.register("services", views.ServiceViewSet, basename="service")
router.register("targets", views.TargetViewSet, basename="target")
router.register("service-versions", views.ServiceVersionViewSet, basename="serviceversion")
router.register("rate-policies", views.RatePolicyViewSet, basename="ratepolicy")
router.register("api-keys", views.ApiKeyViewSet, basename="apikey")
router.register("circuit-breakers", views.CircuitBreakerViewSet, basename="circuit-breaker")

urlpatterns = [
    *router.urls,
    path("health/", views.HealthView.as_view(), name="health"),
    path("health/check/", views.HealthCheckView.as_view(), name="health-check"),
    path("config/", views.ConfigView.as_view(), name="config"),
]
