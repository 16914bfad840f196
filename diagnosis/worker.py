"""What an inference worker process does besides running tasks: load the model at start, and record a
heartbeat that /healthz reads. Connected to Celery's signals when the app loads (diagnosis.apps)."""

from __future__ import annotations

import logging
import threading
import time

from celery import current_app
from celery.signals import worker_process_init, worker_ready

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 15


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
