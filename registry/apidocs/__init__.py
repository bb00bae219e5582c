"""Aggregated API docs: each service's OpenAPI document fetched, merged and served at /api/v1/docs."""
