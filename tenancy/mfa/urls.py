"""Enrolment pages for TOTP two-factor authentication, mounted at /account/mfa/."""

from django.urls import path

from tenancy.mfa import views as mfa_views

app_name = "mfa"

urlpatterns = [
    path("", mfa_views.enrolment, name="enrolment"),
    path("confirm/", mfa_views.confirm, name="confirm"),
    path("remove/", mfa_views.remove, name="remove"),
    path("login/", mfa_views.AccountLoginView.as_view(), name="login"),
    path("logout/", mfa_views.account_logout, name="logout"),
]
