"""Celery tasks: thin wrappers that call a service with an id. Safe to deliver twice."""

from __future__ import annotations

import logging
import threading
import time

from celery import current_app, shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

from diagnosis import services

log = logging.getLogger(__name__)
# With delays of 1, 2, 4 ... capped at TASK_RETRY_MAX_DELAY, a study rides out about three minutes
# of database or storage outage before it fails with a reason (and can be run again).
MAX_RETRIES = 8


def retry_delay(retries: int) -> int:
    return min(2 ** retries, settings.TASK_RETRY_MAX_DELAY)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def assess_study(self, study_id: str) -> str:
    try:
        return services.assess_study(study_id, delivery=self.request.id or "")
    except services.TransientError as error:
        if self.request.retries >= MAX_RETRIES:
            services.fail_after_retries(study_id, str(error), delivery=self.request.id or "")
            return "failed after retries"
        raise self.retry(exc=error, countdown=retry_delay(self.request.retries))


@shared_task
def requeue_stale() -> int:
    return services.requeue_stale()


def serves_inference(app) -> bool:
    """Whether this worker consumes the inference queue (a worker for the default queue only does not)."""
    return "inference" in app.amqp.queues.consume_from


@worker_process_init.connect
def load_model_at_start(**_) -> None:
    """Load the model when a worker process starts, not when its first study arrives."""
    from diagnosis.inference import ModelUnavailable, get_predictor

    if not serves_inference(current_app):
        return
    try:
        get_predictor()
    except ModelUnavailable as error:
        log.error("No model to serve: %s", error)


HEARTBEAT_SECONDS = 15


def record_heartbeat(hostname: str) -> None:
    from django.db import close_old_connections
    from django.utils import timezone

    from diagnosis.inference import ModelUnavailable, serving_version
    from diagnosis.models import WorkerHeartbeat

    try:
        try:
            version = serving_version().name
        except ModelUnavailable:
            version = ""
        WorkerHeartbeat.objects.update_or_create(hostname=hostname,
                                                 defaults={"last_seen": timezone.now(), "model_version": version})
    except Exception:
        log.warning("Could not record the worker heartbeat", exc_info=True)
    finally:
        close_old_connections()


@worker_ready.connect
def start_heartbeat(sender, **_) -> None:
    """Record in the database, every few seconds, that this inference worker is alive (read by /healthz)."""
    if not serves_inference(sender.app):
        return

    def beat() -> None:
        while True:
            record_heartbeat(sender.hostname)
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
