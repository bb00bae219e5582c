"""Operational Django views and their URLconfs: health, metrics, dashboard, geocoding.

They read the data plane's runtime, so they sit above every app; `proxy/` itself holds no
Django view, URLconf or template (SPEC section 17).
"""
