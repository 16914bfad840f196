"""Celery tasks: thin wrappers that call a service. Safe to deliver twice (a delivery is claimed first).

Both run on the default queue, never behind a backlog of studies waiting for inference.
"""

from __future__ import annotations

from celery import shared_task

from integrations import services


@shared_task(name="integrations.tasks.deliver_webhook")
def deliver_webhook_task(delivery_id: int) -> str:
    return services.deliver(delivery_id)


@shared_task(name="integrations.tasks.sweep_webhooks")
def sweep_webhooks_task() -> int:
    return services.sweep()
