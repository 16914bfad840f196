"""No delivery is lost and none is sent twice at once: claims under a lease, the periodic sweep, a worker
killed in the middle of a delivery, a lost task, and "send again" from the admin."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from brainscan.celery import app
from diagnosis.models import AuditEvent
from integrations import services
from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.tasks import deliver_webhook_task, sweep_webhooks_task
from tests.factories import StudyFactory
from tests.integrations.conftest import finish

Status = WebhookDelivery.Status


@pytest.fixture
def endpoint(db, allow_local, receiver):
    endpoint = services.register_endpoint(url=receiver.url)
    receiver.secret = endpoint.secret
    return endpoint


@pytest.fixture
def waiting(endpoint, patient_a, clinician_a) -> WebhookDelivery:
    """A delivery in the outbox whose task never ran (the transaction committed; its message was lost)."""
    finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))  # on-commit callbacks are not run here
    return WebhookDelivery.objects.get()


def expire_lease(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_the_beat_schedule_sends_the_sweep_to_the_default_queue():
    entry = app.conf.beat_schedule["sweep-webhooks"]
    assert entry["task"] == sweep_webhooks_task.name and entry["options"]["queue"] == "default"
    assert app.amqp.router.route({}, deliver_webhook_task.name)["queue"].name == "default"


def test_a_lost_task_is_sent_by_the_sweep(waiting, receiver):
    assert waiting.status == Status.PENDING and waiting.attempts == 0
    assert sweep_webhooks_task() == 1
    assert receiver.wait_for(1)[0].verified
    waiting.refresh_from_db()
    assert waiting.status == Status.DELIVERED and waiting.attempts == 1


def test_a_delivery_held_by_a_killed_worker_is_sent_exactly_once_after_its_lease(waiting, receiver):
    token = services.claim(waiting.pk)  # a worker took it... and was killed with -9 before it sent anything
    assert token
    waiting.refresh_from_db()
    assert waiting.claim == token and waiting.lease_expires_at > timezone.now() and waiting.attempts == 1

    assert services.sweep() == 0  # its lease still runs: nobody else may send it
    assert services.deliver(waiting.pk).startswith("skipped")  # a duplicate message stands back too
    assert receiver.wait_for(1, timeout=0.3) == []

    expire_lease(waiting)
    assert services.sweep() == 1
    assert len(receiver.wait_for(1)) == 1
    assert services.sweep() == 0 and services.deliver(waiting.pk).startswith("skipped")
    assert len(receiver.wait_for(2, timeout=0.3)) == 1  # exactly once
    waiting.refresh_from_db()
    assert waiting.status == Status.DELIVERED and waiting.attempts == 2 and waiting.claim == ""
    assert AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_EXPORTED).count() == 1


def test_two_senders_never_hold_one_delivery(waiting):
    first = services.claim(waiting.pk)
    assert first and services.claim(waiting.pk) is None
    expire_lease(waiting)
    second = services.claim(waiting.pk)
    assert second and second != first


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_have_one_winner(allow_local, receiver, patient_a, clinician_a, monkeypatch):
    """Eight senders claim one delivery at the same moment, each on its own database connection: one wins."""
    from django.db import connection

    monkeypatch.setattr(services, "enqueue", lambda ids: None)  # committed for real here: send no task
    services.register_endpoint(url=receiver.url)
    finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    delivery = WebhookDelivery.objects.get()
    start, results = threading.Barrier(8), []

    def sender():
        try:
            start.wait()
            results.append(services.claim(delivery.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len([token for token in results if token]) == 1
    assert WebhookDelivery.objects.get().attempts == 1


def test_a_sender_that_lost_its_claim_records_the_attempt_but_changes_nothing(waiting, receiver, monkeypatch):
    """A sender whose lease expired while it waited (a paused process): the delivery belongs to whoever took
    it over, so the late sender's outcome does not overwrite the state."""
    stale = services.claim(waiting.pk)
    expire_lease(waiting)
    current = services.claim(waiting.pk)
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=waiting.pk)
    services._record(delivery, stale, retry=False, error="late")
    delivery.refresh_from_db()
    assert delivery.claim == current and delivery.status == Status.PENDING and delivery.history.count() == 1


def test_the_sweep_reserves_what_it_queues_and_a_task_takes_its_reservation(waiting, receiver, monkeypatch):
    queued = []
    monkeypatch.setattr(services, "enqueue", queued.extend)  # the broker holds the messages for a while
    assert services.sweep() == 1 and queued == [waiting.pk]
    assert services.sweep() == 0  # the next sweep does not queue it again while it waits
    waiting.refresh_from_db()
    assert waiting.claim == "" and waiting.lease_expires_at > timezone.now()
    assert services.deliver(waiting.pk) == "delivered"  # the queued task claims the reserved delivery
    assert len(receiver.wait_for(1)) == 1


def test_a_reservation_whose_task_never_ran_is_queued_again(waiting, monkeypatch):
    queued = []
    monkeypatch.setattr(services, "enqueue", queued.extend)
    services.sweep()
    expire_lease(waiting)
    assert services.sweep() == 1 and queued == [waiting.pk, waiting.pk]


def test_the_broker_being_down_loses_nothing(endpoint, receiver, patient_a, clinician_a, monkeypatch,
                                             django_capture_on_commit_callbacks):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(deliver_webhook_task, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    assert WebhookDelivery.objects.get().status == Status.PENDING
    monkeypatch.undo()
    services.sweep()
    assert WebhookDelivery.objects.get().status == Status.DELIVERED and len(receiver.wait_for(1)) == 1


def test_only_active_endpoints_get_deliveries(endpoint, patient_a, clinician_a):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    assert not WebhookDelivery.objects.exists()


def test_send_again_from_the_admin(waiting, receiver, admin_client_, django_capture_on_commit_callbacks):
    services.deliver(waiting.pk)
    waiting.refresh_from_db()
    assert waiting.status == Status.DELIVERED
    page = admin_client_.get(f"/admin/integrations/webhookdelivery/{waiting.pk}/change/")
    assert page.status_code == 200 and waiting.webhook_id in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post("/admin/integrations/webhookdelivery/",
                                      {"action": "send_again", "_selected_action": [waiting.pk]}, follow=True)
    assert "1 delivery(ies) queued to be sent again" in response.content.decode()
    requests = receiver.wait_for(2)
    assert len(requests) == 2 and requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    waiting.refresh_from_db()
    assert waiting.status == Status.DELIVERED and waiting.attempts == 1 and waiting.history.count() == 2
    assert AuditEvent.objects.filter(action=AuditEvent.Action.USER_CHANGED, object_type="webhookdelivery",
                                     details__webhook="send_again").count() == 1


def test_the_admin_shows_the_secret_once(db, allow_local, receiver, admin_client_):
    response = admin_client_.post("/admin/integrations/webhookendpoint/add/",
                                  {"url": receiver.url, "events": ["study.completed", "study.failed"]})
    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 200 and endpoint.secret in response.content.decode()
    assert response["Cache-Control"].startswith("private")
    assert endpoint.events == ["study.completed", "study.failed"] and endpoint.active
    change = admin_client_.get(f"/admin/integrations/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert endpoint.secret not in change and endpoint.masked_secret in change
    listing = admin_client_.get("/admin/integrations/webhookendpoint/").content.decode()
    assert endpoint.secret not in listing
    assert AuditEvent.objects.filter(action=AuditEvent.Action.USER_CHANGED, object_type="webhookendpoint",
                                     details__webhook="created").exists()


def test_the_admin_refuses_a_private_url(db, admin_client_):
    response = admin_client_.post("/admin/integrations/webhookendpoint/add/",
                                  {"url": "http://10.0.0.8/hook", "events": ["study.completed"]})
    assert response.status_code == 200 and "a private address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
