"""Django-side foundations apps build on: problem responses, DRF bases and filters, admin mixins,
the request-id middleware. May import `gateway_project.core`, never an app (SPEC section 17).
"""
