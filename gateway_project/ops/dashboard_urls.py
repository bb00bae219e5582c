from django.urls import path

from gateway_project.ops.dashboard import dashboard_data, dashboard_page

urlpatterns = [
    path("", dashboard_page, name="dashboard"),
    path("data.json", dashboard_data, name="dashboard-data"),
]
