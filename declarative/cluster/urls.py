"""Hybrid mode's routes under /api/manage/: the data planes' list, their config and its long poll."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from declarative.cluster import api, views

app_name = "cluster-api"

router = SimpleRouter()
router.register("data-planes", api.DataPlaneViewSet, basename="data-plane")

urlpatterns = [
    *router.urls,
    path("cluster/config", views.cluster_config, name="config"),
    path("cluster/config/version", views.cluster_config_version, name="config-version"),
]
