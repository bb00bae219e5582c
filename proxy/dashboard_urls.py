from django.urls import path

from proxy.dashboard import dashboard_data, dashboard_page

urlpatterns = [
    path("", dashboard_page, name="dashboard"),
    path("data.json", dashboard_data, name="dashboard-data"),
]
