"""Thin Celery tasks over registry.health."""

from celery import shared_task

from registry.health import health_sweep


@shared_task(ignore_result=True)
def health_sweep_task() -> int:
    return len(health_sweep())
