"""Routes of the usage API under /api/manage/."""

from django.urls import path

from usage.api import views

app_name = "usage-api"

urlpatterns = [path("usage/", views.UsageView.as_view(), name="usage")]
