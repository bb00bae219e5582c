urlpatterns: list = []  # filled by geocoding (proxy/geocode.py)
