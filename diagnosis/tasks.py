"""Celery tasks: thin wrappers that call a service with an id. Safe to deliver twice.

Named `..._task` so a reader never confuses a task with the service it calls; the names Celery
routes by are kept (`diagnosis.tasks.assess_study`) so that messages already queued still run.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from diagnosis import services

# With delays of 1, 2, 4 ... capped at TASK_RETRY_MAX_DELAY, a study rides out about three minutes
# of database or storage outage before it fails with a reason (and can be run again).
MAX_RETRIES = 8


def retry_delay(retries: int) -> int:
    return min(2 ** retries, settings.TASK_RETRY_MAX_DELAY)


@shared_task(bind=True, max_retries=MAX_RETRIES, name="diagnosis.tasks.assess_study")
def assess_study_task(self, study_id: str) -> str:
    try:
        return services.assess_study(study_id, delivery=self.request.id or "")
    except services.TransientError as error:
        if self.request.retries >= MAX_RETRIES:
            services.fail_after_retries(study_id, str(error), delivery=self.request.id or "")
            return "failed after retries"
        raise self.retry(exc=error, countdown=retry_delay(self.request.retries))


@shared_task(name="diagnosis.tasks.requeue_stale")
def requeue_stale_task() -> int:
    return services.requeue_stale()
