"""The integration flow end to end: token -> submit -> real worker over Redis -> poll -> result and files."""

import pytest
from rest_framework.test import APIClient

from tests.api.helpers import upload
from tests.conftest import need
from tests.factories import PASSWORD, PatientFactory, UserFactory, phantom_bytes
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, redis_available, tmp_path_factory):
    need(redis_available, "Redis is not running on 127.0.0.1:6379")
    with django_db_blocker.unblock():
        process = Worker("api", tmp_path_factory.mktemp("workers")).start()
    yield process
    process.stop()


def test_a_hospital_system_submits_polls_and_reads_the_result(worker):
    system = UserFactory(username="ris-gateway")
    patient = PatientFactory(care_team=[system])
    client = APIClient()
    token = client.post("/api/v1/auth/token/", {"username": "ris-gateway", "password": PASSWORD}, format="json")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")

    submitted = client.post("/api/v1/studies/", {
        "patient": patient.code,
        "images": [upload("t1.png", phantom_bytes(3, True)), upload("t2.jpg", phantom_bytes(4, False, "JPEG"))],
    }, format="multipart", HTTP_IDEMPOTENCY_KEY="ris-order-1001")
    assert submitted.status_code == 202
    url = submitted["Location"]

    def completed():
        body = client.get(url).json()
        return body if body["status"] == "completed" else None

    study = wait_for(completed, timeout=90, interval=0.3,
                     message=f"the study to complete; worker log:\n{worker.log()[-3000:]}")
    assert study["prediction"]["label"] in ("tumor", "no_tumor")
    assert study["prediction"]["probability"] == max(i["prediction"]["probability"] for i in study["images"])
    assert all(len(image["prediction"]["features"]) == 13 for image in study["images"])

    heatmap = client.get(study["prediction"]["heatmap_url"])
    assert heatmap.status_code == 200 and b"".join(heatmap.streaming_content)[:4] == b"\x89PNG"

    # The gateway timed out and sends the same request again: same study, nothing new to run.
    again = client.post("/api/v1/studies/", {"patient": patient.code, "image": upload("t1.png", phantom_bytes(3))},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="ris-order-1001")
    assert again.status_code == 202 and again.json()["id"] == study["id"] and again.json()["status"] == "completed"
    assert client.get("/api/v1/studies/").json()["count"] == 1
