"""GET /healthz from the real web server: 200 when every part is up, 503 naming the part that is down.
Anonymous probes get the status and the failing parts' names; an administrator (or an admin's API token)
gets every check's details."""

from datetime import timedelta

import pytest
import requests
from django.urls import reverse
from django.utils import timezone

from diagnosis.inference import serving_version
from diagnosis.models import WorkerHeartbeat
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_token(db) -> str:
    from diagnosis.api import tokens
    from tests.factories import UserFactory

    secret, _ = tokens.issue(user=UserFactory(username="probe-admin", is_staff=True, is_superuser=True),
                             request=None)
    return secret


def health(site, token: str = "") -> tuple[int, dict]:
    headers = {"Authorization": f"Token {token}"} if token else {}
    response = requests.get(f"{site.web.url}/healthz", headers=headers, timeout=30)
    return response.status_code, response.json()


def failing(report: dict) -> set[str]:
    return set(report["failing"])


def test_everything_up_answers_200_with_the_model_and_heartbeat(broken_site, admin_token):
    broken_site.worker("healthy")
    wait_for(WorkerHeartbeat.objects.exists, 30, message="the worker's first heartbeat")
    assert health(broken_site) == (200, {"status": "ok", "failing": []})  # what anyone may know
    status, report = health(broken_site, admin_token)
    assert status == 200 and report["status"] == "ok", report
    checks = report["checks"]
    assert checks["broker"]["transport"] == "redis" and checks["storage"]["ok"] and checks["database"]["ok"]
    assert checks["model"]["version"] == serving_version().name == checks["worker"]["model_version"]
    assert 0 <= checks["worker"]["last_heartbeat_age_s"] < 30 and checks["worker"]["workers"] == 1


def test_a_stopped_broker_answers_503_naming_the_broker(broken_site):
    broken_site.worker("healthy")
    wait_for(WorkerHeartbeat.objects.exists, 30, message="the worker's first heartbeat")
    broken_site.redis.stop()
    status, report = health(broken_site)
    assert status == 503 and report["status"] == "unavailable"
    assert failing(report) == {"broker"}, report
    broken_site.redis.start()
    assert health(broken_site)[0] == 200


def test_no_worker_heartbeat_answers_503_naming_the_worker(broken_site, admin_token):
    status, report = health(broken_site)  # no worker has ever reported
    assert status == 503 and failing(report) == {"worker"}, report
    assert "no worker" in health(broken_site, admin_token)[1]["checks"]["worker"]["error"]

    WorkerHeartbeat.objects.create(hostname="gone@host", last_seen=timezone.now() - timedelta(minutes=10))
    status, report = health(broken_site, admin_token)
    assert status == 503 and {name for name, check in report["checks"].items() if not check["ok"]} == {"worker"}
    assert report["checks"]["worker"]["last_heartbeat_age_s"] >= 600 and report["checks"]["worker"]["workers"] == 0


def test_a_missing_model_answers_503_naming_the_model(admin_client_, settings, tmp_path):
    client = admin_client_
    settings.MODEL_DIR = tmp_path / "no-models-here"
    settings.MODEL_VERSION = None
    response = client.get(reverse("healthz"))
    report = response.json()
    assert response.status_code == 503 and not report["checks"]["model"]["ok"]
    assert "no model" in report["checks"]["model"]["error"].lower()


def test_a_model_file_that_does_not_match_its_checksum_answers_503(admin_client_, registry_copy):
    client = admin_client_
    registry_copy("cnn-20990101-000000")
    version = registry_copy.registry().get("cnn-20990101-000000")
    assert client.get(reverse("healthz")).json()["checks"]["model"]["ok"]

    for tampered in (version.keras_path, version.onnx_path):  # a worker verifies both before it loads
        original = tampered.read_bytes()
        tampered.write_bytes(original + b"tampered")
        report = client.get(reverse("healthz")).json()
        assert not report["checks"]["model"]["ok"] and "sha256" in report["checks"]["model"]["error"]
        tampered.write_bytes(original)
