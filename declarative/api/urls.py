"""Routes of the configuration file under /api/manage/config/ (the version itself is registry's).

No trailing slash: the paths are SPEC section 18's, and a CI job posts to them as written.
"""

from django.urls import path

from declarative.api import views

app_name = "declarative-api"

urlpatterns = [
    path("export", views.ConfigExportView.as_view(), name="export"),
    path("diff", views.ConfigDiffView.as_view(), name="diff"),
    path("apply", views.ConfigApplyView.as_view(), name="apply"),
    path("schema", views.ConfigSchemaView.as_view(), name="schema"),
]
