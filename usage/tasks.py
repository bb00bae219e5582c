"""Thin Celery tasks over usage.rollup."""

from celery import shared_task

from usage.rollup import roll_up


@shared_task(ignore_result=True)
def roll_up_usage_task() -> int:
    return roll_up()
