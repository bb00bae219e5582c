"""The tenant portal's pages under /portal/."""

from django.urls import path

from portal import key_views, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.PortalLoginView.as_view(), name="login"),
    path("logout/", views.portal_logout, name="logout"),
    path("usage/", views.usage, name="usage"),
    path("keys/", key_views.keys, name="keys"),
    path("keys/<int:key_id>/", key_views.key_detail, name="key-detail"),
]
