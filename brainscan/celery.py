"""The Celery application: inference on its own queue, everything else on the default one."""

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brainscan.settings")

app = Celery("brainscan")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _broker_options() -> dict:
    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        folder = settings.CELERY_BROKER_FOLDER
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
                "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
                "store_processed": False}
    options = {
        "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
        # A web request that sends a task while the broker is down gives up after one quick retry
        # instead of kombu's default of retrying for about 6 s (which held every submission, and the
        # web threads, that long during an outage): the study waits in the database for the sweeper.
        # Workers reconnect on their own terms (broker_connection_max_retries below).
        "max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5,
        # A broker on an unreachable host fails in seconds instead of the system's minutes.
        "socket_connect_timeout": 5,
    }
    if settings.BROKER_KEY_PREFIX:
        options["global_keyprefix"] = settings.BROKER_KEY_PREFIX
    return options


app.conf.update(
    broker_transport_options=_broker_options(),
    broker_connection_retry_on_startup=True,
    # A worker outlives any broker outage (Celery's default gives up after 100 reconnections).
    broker_connection_max_retries=None,
    # A message is acknowledged only once its study is stored, and comes back if the process
    # running it dies; the study's atomic claim makes a second delivery harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # When the broker connection drops, a running assessment finishes and stores its result; the
    # message that comes back for it then finds the study completed.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    worker_prefetch_multiplier=1,
    # A process that grew (a large series, a leak) is replaced once its task is done, before it can exhaust the
    # machine; a study whose run kills its process outright is failed after its attempts (services.claim).
    worker_max_memory_per_child=settings.WORKER_MAX_MEMORY_MB * 1024,
    task_soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
    task_time_limit=settings.TASK_TIME_LIMIT,
    task_ignore_result=True,
    task_default_queue="default",
    task_routes={"diagnosis.tasks.assess_study": {"queue": "inference"}},
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    timezone=settings.TIME_ZONE,
    # Write beat's schedule file after every task it sends: its fresh mtime is beat's health signal.
    beat_sync_every=1,
    beat_schedule={
        # A sweep that waited longer than the interval is superseded by the next one: no backlog of
        # sweeps piles up in the queue while no worker runs.
        "requeue-stale-studies": {"task": "diagnosis.tasks.requeue_stale", "schedule": settings.SWEEP_EVERY_SECONDS,
                                  "options": {"expires": settings.SWEEP_EVERY_SECONDS}},
        # Webhooks whose next attempt is due, or whose sending worker died (its lease expired), are sent again.
        "sweep-webhooks": {"task": "integrations.tasks.sweep_webhooks", "schedule": settings.SWEEP_EVERY_SECONDS,
                           "options": {"expires": settings.SWEEP_EVERY_SECONDS, "queue": "default"}},
    },
)
app.autodiscover_tasks()
