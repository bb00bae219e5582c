"""`/api/v1/geocode` (SPEC section 11), mounted under `api/v1/` by the project URLconf."""

from django.urls import path

from gateway_project.ops.geocode import GeocodeView

urlpatterns = [
    path("geocode", GeocodeView.as_view(), name="geocode"),
]
