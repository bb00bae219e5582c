from django.urls import path

from tenancy import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/register/confirm", views.RegisterConfirmView.as_view(), name="auth-register-confirm"),
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", views.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/token", views.OAuthTokenView.as_view(), name="auth-token"),
    path("auth/demo", views.DemoSessionView.as_view(), name="auth-demo"),
    path("users/me", views.MeView.as_view(), name="users-me"),
]
