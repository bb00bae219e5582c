"""Foundations every app imports: no Django views here, and nothing above this package.

The problem catalogue, the Redis connection and pub/sub, env readers, client-IP
resolution, request ids and roles (SPEC section 17).
"""
