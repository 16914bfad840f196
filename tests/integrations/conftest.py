"""Fixtures of the hospital-integration tests: a real HTTP receiver on 127.0.0.1 that verifies signatures,
Celery tasks run in this process (eagerly, as a worker would run them), and studies finished the way the
worker finishes them (predictions and the final move in one transaction that sends study_finished)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from standardwebhooks import Webhook, WebhookVerificationError

from brainscan.celery import app
from diagnosis import events
from diagnosis.models import Prediction, Study
from diagnosis.services.transitions import move
from tests.api.helpers import api_a, api_anonymous, api_b, fresh_throttles  # noqa: F401

VERSION, SHA = "cnn-test-1", "ab" * 32


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified: bool = False
    verification_error: str = ""

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next planned status (200 when none is left) and
    verifies each signature with the secret it is given, as a hospital's receiver would."""

    url: str
    port: int
    secret: str = ""
    plan: list = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    delay: float = 0.0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received


@pytest.fixture
def receiver():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            rec: Receiver = state["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            item = Received(self.path, dict(self.headers.items()), body, time.monotonic())
            if rec.secret:
                try:
                    Webhook(rec.secret).verify(body, item.headers)
                    item.verified = True
                except WebhookVerificationError as error:
                    item.verification_error = str(error)
            if rec.delay:
                time.sleep(rec.delay)
            answer = rec.plan.pop(0) if rec.plan else 200
            status, extra = (answer if isinstance(answer, tuple) else (answer, {}))
            payload = extra.pop("body", b'{"ok": true}')
            rec.received.append(item)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    state["receiver"] = Receiver(url=f"http://127.0.0.1:{port}/hooks/brainscan?source=test", port=port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["receiver"]
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def eager_tasks():
    """Tasks sent with apply_async run at once in this process (the worker's code, without a broker)."""
    before = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def allow_local(settings):
    settings.WEBHOOK_ALLOW = ["127.0.0.1"]
    return settings




def predict(image, probability: float | None = 0.9, *, rejected: bool = False, threshold: float = 0.6,
            code: str = "not_brain_mri", message: str = "This does not look like a brain MRI slice.") -> Prediction:
    """A stored prediction of one image: assessed (tumor when at or above the threshold), or refused by the
    quality gate."""
    probability = 0.5 if probability is None else probability
    return Prediction.objects.create(
        image=image, model_version=VERSION, model_sha256=SHA, probability=probability,
        label="tumor" if probability >= threshold else "no_tumor", threshold=threshold,
        quality=Prediction.Quality.REJECTED if rejected else Prediction.Quality.OK,
        quality_code=code if rejected else "", quality_message=message if rejected else "",
        features={}, inference_ms=12.0, latency_ms=20.0)


def finish(study: Study, outcomes: list | None = None) -> Study:
    """Finish a study as the worker does (store_results): its predictions, the move to completed (or to
    unassessable when the gate refused every image) and study_finished, in one transaction.

    `outcomes`: per image, a probability, or "rejected" for an image the quality gate refused."""
    images = list(study.images.order_by("position"))
    outcomes = outcomes if outcomes is not None else [0.9] * len(images)
    with transaction.atomic():
        predictions = [predict(image, rejected=True) if outcome == "rejected" else predict(image, outcome)
                       for image, outcome in zip(images, outcomes)]
        usable = [p for p in predictions if p.usable]
        held = Study.objects.filter(pk=study.pk, status__in=Study.ACTIVE_STATES)
        if usable:
            top = max(usable, key=lambda p: p.probability)
            label = "tumor" if any(p.label == "tumor" for p in usable) else top.label
            move(held, Study.Status.COMPLETED, probability=top.probability, label=label)
        else:
            move(held, Study.Status.UNASSESSABLE, probability=None, label="", error_code="unassessable",
                 error="No image could be assessed: image 1: This does not look like a brain MRI slice. Read the "
                       "study by hand.")
        study.refresh_from_db()
        events.finished(study)
    return study
