"""`/api/v1/geocode` (SPEC section 11), mounted under `api/v1/` by the project URLconf."""

from django.urls import path

from proxy.geocode import GeocodeView

urlpatterns = [
    path("geocode", GeocodeView.as_view(), name="geocode"),
]
