from django.urls import path

from gateway_project.ops import views
from gateway_project.ops.metrics_view import metrics_view

urlpatterns = [
    path("health", views.health_view, name="health"),
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("health/startup", views.startup, name="health-startup"),
    path("api/v1/health", views.health_view, name="api-health"),
    path("api/v1/health/detailed", views.detailed, name="api-health-detailed"),
    path("api/v1/status", views.status, name="api-status"),
    path("metrics", metrics_view, name="metrics"),
]
