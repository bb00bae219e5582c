"""Aggregated API docs, included under "api/v1/": /api/v1/docs and its merged document."""

from django.urls import path
from django.views.generic import RedirectView

from registry.apidocs import views as apidocs_views

urlpatterns = [
    path("docs", apidocs_views.docs_page, name="apidocs"),
    path("docs/", RedirectView.as_view(pattern_name="apidocs"), name="apidocs-slash"),
    path("docs/openapi.json", apidocs_views.openapi_document, name="apidocs-openapi"),
]
