"""The config-stale banner on every admin page (SPEC section 16): a template context
processor, so each page says so while any instance serves an older snapshot because a
newer config version fails to compile, and names the object at fault.

It reads the instance board (`gateway_project.core.breaker_board`) like the health views,
only for staff and only when a template asks for it.
"""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from gateway_project.core import breaker_board

__all__ = ["config_stale_banner"]


def _stale_configs(request) -> list[dict]:
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return []
    return breaker_board.recent_board().stale_configs()


def config_stale_banner(request) -> dict:
    """`gateway_config_stale`: the stale instances' config states (empty when all is well)."""
    return {"gateway_config_stale": SimpleLazyObject(lambda: _stale_configs(request))}
