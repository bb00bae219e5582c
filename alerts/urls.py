from django.urls import path

from alerts.views import AlertsView

urlpatterns = [
    path("alerts", AlertsView.as_view(), name="alerts"),
]
