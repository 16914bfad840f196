"""Inference has its own queue: a flood of studies waiting for inference workers never delays the
sweeper or other tasks, which a worker for the default queue runs (real worker, real Redis)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from brainscan.celery import app
from diagnosis.models import AuditEvent, Study, WorkerHeartbeat
from diagnosis.tasks import assess_study_task, requeue_stale_task
from tests.conftest import need
from tests.factories import StudyFactory
from tests.workers import Worker, wait_for


def queue_of(task) -> str:
    return app.amqp.router.route({}, task.name)["queue"].name


@pytest.mark.no_db
def test_assessment_goes_to_the_inference_queue_and_the_rest_to_default():
    assert queue_of(assess_study_task) == "inference"
    assert queue_of(requeue_stale_task) == "default"
    assert app.conf.task_default_queue == "default"


def broker():
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def waiting(queue: str) -> int:
    """Messages in a queue: kombu keeps each queue as a Redis list under the installation's key prefix."""
    return broker().llen(settings.BROKER_KEY_PREFIX + queue)


@pytest.fixture
def default_worker(django_db_setup, django_db_blocker, redis_available, tmp_path):
    need(redis_available, "Redis is not running on 127.0.0.1:6379")
    with django_db_blocker.unblock():
        worker = Worker("default-only", tmp_path, queues="default").start()
    yield worker
    worker.stop()
    broker().delete(settings.BROKER_KEY_PREFIX + "inference")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_runs_while_inference_is_flooded(default_worker):
    stale = StudyFactory(images=1, enqueued_at=timezone.now() - timedelta(hours=1))
    flood = 300
    for _ in range(flood):  # studies nobody is there to assess: no inference worker runs
        assess_study_task.apply_async(args=["00000000-0000-0000-0000-000000000000"])
    assert waiting("inference") >= flood

    requeue_stale_task.delay()
    wait_for(lambda: AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_REQUEUED, object_id=str(stale.pk))
             .exists(), timeout=30, message=f"the sweeper to run; worker log:\n{default_worker.log()[-2000:]}")
    # The flood and the re-sent study wait, none taken. The sweeper sends after its commit, so the message may
    # follow the audit event by a moment.
    wait_for(lambda: waiting("inference") >= flood + 1, timeout=10, message="the re-sent study to be queued")
    assert Study.objects.get(pk=stale.pk).status == Study.Status.QUEUED
    # Only inference workers report to /healthz, so a default worker cannot hide a missing inference one.
    assert not WorkerHeartbeat.objects.filter(hostname__startswith="default-only@").exists()
