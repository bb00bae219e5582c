urlpatterns: list = []  # filled by the dashboard (proxy/dashboard.py)
