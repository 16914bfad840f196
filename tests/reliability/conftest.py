"""A site that can be broken for real: a private redis-server on a free port (stopped and started by
the tests, never the machine's shared one), gunicorn and Celery beat on the test database, and Celery
workers started per test with their own settings. Leases and sweeps are short so that recovery takes
seconds: BRAINSCAN_TASK_SOFT_SECONDS=5 gives a 25 s lease, the sweeper runs every second and re-sends
a queued study after 5 s.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from stack.clients import ApiClient, SeededPatient, WebFormClient
from stack.processes import CeleryBeat, RedisServer, WebServer
from diagnosis.models import AuditEvent, Prediction, Study
from tests.conftest import need
from tests.factories import PASSWORD, PatientFactory, UserFactory
from tests.workers import Worker, wait_for, worker_env

FAST_RECOVERY = {
    "BRAINSCAN_TASK_SOFT_SECONDS": "5",
    "BRAINSCAN_SWEEP_SECONDS": "1",
    "BRAINSCAN_STALE_SECONDS": "5",
}
SETTLED = (Study.Status.COMPLETED, Study.Status.UNASSESSABLE, Study.Status.FAILED)


@dataclass
class Site:
    folder: Path
    redis: RedisServer
    env: dict
    web: WebServer
    beat: CeleryBeat
    workers: list[Worker] = field(default_factory=list)

    def worker(self, name: str, **env: str) -> Worker:
        """A worker on the private Redis with concurrency 1 (one pool process, no beat)."""
        worker = Worker(name, self.folder / "logs", **{**self.env, **env})
        self.workers.append(worker)
        return worker.start(90)

    def clinician(self, client_class=WebFormClient) -> tuple[WebFormClient | ApiClient, SeededPatient]:
        """A clinician logged in (through the login page, or for a token with ApiClient), and their
        consenting patient."""
        user = UserFactory()
        patient = PatientFactory(care_team=[user])
        return client_class(self.web.url, user.username, PASSWORD), SeededPatient(patient.pk, patient.code)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in self.workers)


@pytest.fixture(scope="session")
def site(django_db_setup, django_db_blocker, tmp_path_factory):
    need(shutil.which("redis-server") is not None, "redis-server is not installed (apt-get install redis-server)")
    folder = tmp_path_factory.mktemp("site")
    redis = RedisServer(folder / "redis").start()
    with django_db_blocker.unblock():
        env = {"CELERY_BROKER_URL": redis.url, "REDIS_URL": redis.url, **FAST_RECOVERY}
        full_env = worker_env(**env)
    web = beat = None
    try:
        web = WebServer(folder / "logs", full_env).start(90)
        beat = CeleryBeat(folder / "logs", full_env).start(60)
        yield Site(folder, redis, env, web, beat)
    finally:
        for service in (beat, web, redis):
            if service is not None:
                service.stop()


@pytest.fixture
def broken_site(site, transactional_db):
    """The site, with the workers a test starts stopped afterwards and Redis running again."""
    yield site
    for worker in site.workers:
        worker.stop()
    site.workers.clear()
    if not site.redis.running:
        site.redis.start()


def settle(study_ids, site: Site, timeout: float = 90) -> list[Study]:
    """Wait until every study is completed, unassessable or failed; return them."""
    wait_for(lambda: Study.objects.filter(pk__in=study_ids, status__in=SETTLED).count() == len(study_ids), timeout,
             interval=0.3, message=f"{len(study_ids)} studies to settle; logs:\n{site.logs()}")
    return list(Study.objects.filter(pk__in=study_ids))


def assert_done_exactly_once(study: Study) -> None:
    """Completed, one prediction and one heatmap file per image, the result stored once."""
    assert study.status == Study.Status.COMPLETED, (study.status, study.error)
    images = list(study.images.all())
    predictions = Prediction.objects.filter(image__study=study)
    assert sorted(p.image_id for p in predictions) == sorted(image.pk for image in images)
    assert AuditEvent.objects.filter(action="prediction.stored", object_id=str(study.pk)).count() == 1
    _, heatmaps = default_storage.listdir(f"heatmaps/{study.pk}")
    assert len(heatmaps) == len(images), heatmaps
    assert study.claim == "" and study.lease_expires_at is None


__all__ = ["FAST_RECOVERY", "Site", "assert_done_exactly_once", "settle"]
