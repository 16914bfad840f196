"""Signed webhooks: a real receiver on 127.0.0.1 gets each final state of a study, signed with the Standard
Webhooks scheme; retries, give-ups, the outbound URL guard (at registration and at delivery, with the host
resolved once and the checked address connected to), the command and the endpoint's automatic disabling."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from diagnosis.models import AuditEvent
from diagnosis.services.assessment import fail
from integrations import delivery, services
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_secret
from tests.factories import StudyFactory
from tests.integrations.conftest import SHA, VERSION, finish

Status = WebhookDelivery.Status


def register(receiver, **kwargs) -> WebhookEndpoint:
    endpoint = services.register_endpoint(url=kwargs.pop("url", receiver.url), **kwargs)
    receiver.secret = endpoint.secret
    return endpoint


def due_now(*deliveries) -> None:
    """Let time pass until the next attempt is due."""
    WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_a_completed_study_reaches_the_receiver_signed_within_5_seconds(
        allow_local, receiver, patient_a, clinician_a, django_capture_on_commit_callbacks):
    endpoint = register(receiver)
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=2)
    with django_capture_on_commit_callbacks(execute=True):
        finished_at = time.monotonic()
        finish(study, [0.93, 0.2])
    [request] = receiver.wait_for(1, timeout=5)
    assert request.at - finished_at < 5
    assert request.verified, request.verification_error
    assert request.path == "/hooks/brainscan?source=test"
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    body = request.json()
    assert body["type"] == "study.completed"
    data = body["data"]
    assert data["study"] == str(study.pk) and data["patient"] == patient_a.code and data["status"] == "completed"
    assert data["result"] == {"label": "tumor", "probability": 0.93, "threshold": 0.6, "model_version": VERSION}
    assert data["error"] is None
    base = "http://127.0.0.1:8000/api/v1/studies/"
    assert data["links"] == {"study": f"{base}{study.pk}/", "fhir": f"{base}{study.pk}/fhir/"}  # no DICOM: no SR
    assert set(body) == {"type", "timestamp", "data"}
    assert SHA not in request.body.decode() and "scan" not in request.body.decode()

    sent = WebhookDelivery.objects.get(endpoint=endpoint)
    assert sent.status == Status.DELIVERED and sent.attempts == 1 and sent.delivered_at
    assert sent.webhook_id == request.headers["webhook-id"]
    [attempt] = WebhookAttempt.objects.filter(delivery=sent)
    assert attempt.status_code == 200 and attempt.response_body == '{"ok": true}' and attempt.error == ""
    exported = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_EXPORTED)
    assert exported.details["format"] == "webhook" and exported.details["study"] == str(study.pk)
    assert exported.patient_code == patient_a.code and exported.via == "worker"


def test_links_use_the_public_url(allow_local, settings, receiver, patient_a, clinician_a,
                                  django_capture_on_commit_callbacks):
    settings.PUBLIC_URL = "https://brainscan.example.org"
    register(receiver)
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    [request] = receiver.wait_for(1)
    assert request.json()["data"]["links"]["study"] == f"https://brainscan.example.org/api/v1/studies/{study.pk}/"


def test_a_failed_study_is_sent_to_the_endpoints_subscribed_to_failures_only(
        allow_local, receiver, patient_a, clinician_a, django_capture_on_commit_callbacks):
    register(receiver, events=["study.failed"])
    only_completed = WebhookEndpoint.objects.create(url=receiver.url + "&other=1", events=["study.completed"])
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        fail(study, "unreadable_image", "Image 1 could not be read from storage.")  # the worker's own service
    [request] = receiver.wait_for(1)
    data = request.json()["data"]
    assert request.json()["type"] == "study.failed" and data["status"] == "failed" and data["result"] is None
    assert data["error"] == {"code": "unreadable_image", "message": "Image 1 could not be read from storage."}
    assert request.verified
    assert not WebhookDelivery.objects.filter(endpoint=only_completed).exists()


def test_an_unassessable_study_has_its_own_event(allow_local, receiver, patient_a, clinician_a,
                                                django_capture_on_commit_callbacks):
    register(receiver)
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study, ["rejected"])
    [request] = receiver.wait_for(1)
    assert request.json()["type"] == "study.unassessable"
    assert request.json()["data"]["error"]["code"] == "unassessable"


def test_the_deliveries_roll_back_with_the_move_that_did_not_happen(allow_local, receiver, patient_a, clinician_a,
                                                                    django_capture_on_commit_callbacks):
    register(receiver)
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        from django.db import transaction

        with transaction.atomic():
            finish(study)
            raise RuntimeError("the transaction that finished the study fails")
    assert not WebhookDelivery.objects.exists()
    assert receiver.wait_for(1, timeout=0.3) == []


def test_500_twice_then_200_arrives_at_the_third_attempt_with_back_off(
        allow_local, receiver, patient_a, clinician_a, django_capture_on_commit_callbacks):
    register(receiver)
    receiver.plan = [500, (503, {"body": b"x" * 5000}), 200]
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    receiver.wait_for(1)
    sent = WebhookDelivery.objects.get()
    assert sent.status == Status.FAILED and sent.attempts == 1 and sent.last_error == "HTTP 500: an error"
    assert timedelta(seconds=50) < sent.next_attempt_at - timezone.now() <= timedelta(minutes=1)

    assert services.sweep() == 0  # not due yet
    due_now(sent)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep() == 1
    receiver.wait_for(2)
    sent.refresh_from_db()
    assert sent.status == Status.FAILED and sent.attempts == 2
    assert timedelta(minutes=1) < sent.next_attempt_at - timezone.now() <= timedelta(minutes=2)  # doubled

    due_now(sent)
    services.sweep()
    requests = receiver.wait_for(3)
    sent.refresh_from_db()
    assert sent.status == Status.DELIVERED and sent.attempts == 3
    assert len(requests) == 3 and all(r.verified for r in requests)
    assert len({r.headers["webhook-id"] for r in requests}) == 1  # the same message every time
    attempts = list(WebhookAttempt.objects.filter(delivery=sent))
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert len(attempts[1].response_body) == 1024  # at most 1 kB of an answer is kept
    assert WebhookEndpoint.objects.get().failing_since is None  # a success clears the failure


@pytest.mark.parametrize(("status", "expected"), [(404, Status.GIVEN_UP), (400, Status.GIVEN_UP),
                                                  (408, Status.FAILED), (429, Status.FAILED), (502, Status.FAILED)])
def test_other_4xx_give_up_at_once_and_408_429_5xx_are_retried(allow_local, receiver, patient_a, clinician_a,
                                                               django_capture_on_commit_callbacks, status, expected):
    register(receiver)
    receiver.plan = [status]
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    receiver.wait_for(1)
    assert WebhookDelivery.objects.get().status == expected
    assert WebhookEndpoint.objects.get().failing_since is not None


def test_a_redirect_is_not_followed(allow_local, receiver, patient_a, clinician_a, django_capture_on_commit_callbacks):
    register(receiver)
    receiver.plan = [(302, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    assert len(receiver.wait_for(2, timeout=0.5)) == 1
    sent = WebhookDelivery.objects.get()
    assert sent.status == Status.GIVEN_UP and "redirect" in sent.last_error


def test_a_slow_receiver_times_out_and_is_retried(allow_local, settings, receiver, patient_a, clinician_a,
                                                  django_capture_on_commit_callbacks):
    settings.WEBHOOK_READ_SECONDS = 1
    register(receiver)
    receiver.delay = 2.5
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    assert time.monotonic() - started < 2.4
    sent = WebhookDelivery.objects.get()
    assert sent.status == Status.FAILED and "Timeout" in sent.last_error
    assert WebhookAttempt.objects.get().status_code is None


def test_a_connection_error_is_retried(allow_local, patient_a, clinician_a, django_capture_on_commit_callbacks):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    services.register_endpoint(url=f"http://127.0.0.1:{port}/")
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    sent = WebhookDelivery.objects.get()
    assert sent.status == Status.FAILED and sent.attempts == 1 and sent.last_error


def test_a_tampered_body_or_a_wrong_secret_fails_verification(allow_local, receiver, patient_a, clinician_a,
                                                              django_capture_on_commit_callbacks):
    endpoint = register(receiver)
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    [request] = receiver.wait_for(1)
    assert Webhook(endpoint.secret).verify(request.body, request.headers)["data"]["study"] == str(study.pk)
    tampered = json.loads(request.body)
    tampered["data"]["result"]["label"] = "no_tumor"
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(json.dumps(tampered).encode(), request.headers)
    forged = {**request.headers, "webhook-signature": "v1," + "A" * 43 + "="}
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(request.body, forged)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


# --- The outbound URL guard --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_a_loopback_url_is_refused_at_registration_without_the_allow_list(db, receiver, host):
    url = f"http://{host}:{receiver.port}/hook"
    with pytest.raises(ValidationError) as refused:
        services.register_endpoint(url=url)
    assert "loopback" in str(refused.value) and "BRAINSCAN_WEBHOOK_ALLOW" in str(refused.value)
    with pytest.raises(CommandError, match="loopback"):
        call_command("add_webhook", url, stdout=StringIO())
    assert not WebhookEndpoint.objects.exists()


def test_a_loopback_url_is_refused_again_at_delivery(settings, receiver, patient_a, clinician_a,
                                                     django_capture_on_commit_callbacks):
    """Registered while the allow-list allowed it; the allow-list changed since: nothing is sent."""
    settings.WEBHOOK_ALLOW = ["127.0.0.1"]
    register(receiver)
    settings.WEBHOOK_ALLOW = []
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    sent = WebhookDelivery.objects.get()
    assert sent.status == Status.GIVEN_UP and sent.last_error.startswith("Refused: 127.0.0.1 resolves to 127.0.0.1")
    assert receiver.wait_for(1, timeout=0.3) == []


class Resolver:
    """socket.getaddrinfo for made-up names: each call answers the next address of the plan (the last one
    repeats); every call is counted."""

    def __init__(self, monkeypatch, names: dict[str, list[str]]):
        self.names, self.calls = names, []
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host not in self.names:
                return real(host, port, *args, **kwargs)
            self.calls.append(host)
            plan = self.names[host]
            address = plan.pop(0) if len(plan) > 1 else plan[0]
            family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(delivery.socket, "getaddrinfo", getaddrinfo)


def test_a_name_that_resolves_to_loopback_is_refused(db, monkeypatch, receiver):
    Resolver(monkeypatch, {"hooks.hospital.test": ["127.0.0.1"]})
    with pytest.raises(ValidationError, match=r"hooks.hospital.test resolves to 127.0.0.1, a loopback address"):
        services.register_endpoint(url=f"http://hooks.hospital.test:{receiver.port}/")


def test_the_host_is_resolved_once_and_the_checked_address_is_the_one_connected_to(
        allow_local, monkeypatch, receiver, patient_a, clinician_a, django_capture_on_commit_callbacks):
    """hooks.hospital.test does not exist: the request can only arrive because the connection went to the address
    the guard resolved and checked (allowed here), with the URL's host in the Host header."""
    resolver = Resolver(monkeypatch, {"hooks.hospital.test": ["127.0.0.1"]})
    register(receiver, url=f"http://hooks.hospital.test:{receiver.port}/hook")
    resolver.calls.clear()
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    [request] = receiver.wait_for(1)
    assert resolver.calls == ["hooks.hospital.test"]  # once per delivery
    assert request.headers["Host"] == f"hooks.hospital.test:{receiver.port}" and request.verified


def test_dns_rebinding_to_loopback_after_registration_is_refused(db, monkeypatch, receiver, patient_a, clinician_a,
                                                                  django_capture_on_commit_callbacks):
    """Public when registered, loopback when delivered: the delivery checks the address it connects to."""
    Resolver(monkeypatch, {"rebind.hospital.test": ["93.184.216.34", "127.0.0.1"]})
    register(receiver, url=f"http://rebind.hospital.test:{receiver.port}/hook")
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    sent = WebhookDelivery.objects.get()
    assert sent.status == Status.GIVEN_UP and "resolves to 127.0.0.1" in sent.last_error
    assert receiver.wait_for(1, timeout=0.3) == []


def test_an_allow_listed_host_name_or_network_works(settings, monkeypatch, receiver, patient_a, clinician_a,
                                                    django_capture_on_commit_callbacks):
    Resolver(monkeypatch, {"ris.hospital.internal": ["127.0.0.1"]})
    settings.WEBHOOK_ALLOW = ["ris.hospital.internal"]
    register(receiver, url=f"http://ris.hospital.internal:{receiver.port}/hook")
    settings.WEBHOOK_ALLOW = ["10.0.0.0/8", "127.0.0.0/8"]
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    assert receiver.wait_for(1)[0].verified


def test_only_https_in_production(db, settings):
    settings.PRODUCTION = True
    settings.WEBHOOK_ALLOW = ["127.0.0.1"]
    with pytest.raises(ValidationError, match="must use https"):
        services.register_endpoint(url="http://127.0.0.1:9/hook")
    with pytest.raises(ValidationError, match="user name or password"):
        services.register_endpoint(url="https://user:secret@127.0.0.1/hook")


@pytest.mark.no_db
@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.10", "private"), ("172.16.5.4", "private"), ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"), ("169.254.10.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "non-public"),
    ("2002:7f00:1::", "loopback"), ("240.0.0.1", "reserved"), ("93.184.216.34", None), ("2606:4700::1111", None),
])
def test_what_the_guard_refuses(address, kind):
    assert delivery.forbidden_kind(ipaddress.ip_address(address)) == kind


# --- The command and the endpoint's life --------------------------------------------------------------------


def test_add_webhook_prints_the_secret_as_its_last_line(db, allow_local, receiver):
    out = StringIO()
    call_command("add_webhook", receiver.url, "--event", "study.completed", "--event", "study.unassessable",
                 stdout=out)
    endpoint = WebhookEndpoint.objects.get()
    assert out.getvalue().splitlines()[-1] == endpoint.secret and endpoint.secret.startswith("whsec_")
    assert endpoint.active and endpoint.events == ["study.completed", "study.unassessable"]
    call_command("add_webhook", receiver.url + "&all=1", stdout=StringIO())
    assert WebhookEndpoint.objects.last().events == ["study.completed", "study.unassessable", "study.failed",
                                                     "study.cancelled"]
    created = AuditEvent.objects.filter(action=AuditEvent.Action.USER_CHANGED, object_type="webhookendpoint")
    assert created.count() == 2 and all(e.details["webhook"] == "created" for e in created)
    assert not any(endpoint.secret in json.dumps(e.details) for e in AuditEvent.objects.all())


def test_an_endpoint_failing_for_a_day_is_disabled_and_admins_are_told(
        allow_local, receiver, patient_a, clinician_a, admin_client_, django_capture_on_commit_callbacks):
    endpoint = register(receiver)
    receiver.plan = [500, 500]
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    with django_capture_on_commit_callbacks(execute=True):
        finish(study)
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.failing_since
    page = admin_client_.get("/admin/integrations/webhookendpoint/").content.decode()
    assert "has been failing since" in page

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=25))
    sent = WebhookDelivery.objects.get()
    due_now(sent)
    services.sweep()
    endpoint.refresh_from_db()
    assert not endpoint.active and endpoint.disabled_at and "HTTP 500" in endpoint.disabled_reason
    page = admin_client_.get("/admin/integrations/webhookendpoint/").content.decode()
    assert f"Webhook endpoint {receiver.url.replace('&', '&amp;')} was disabled" in page
    assert "was disabled" in admin_client_.get("/admin/integrations/webhookdelivery/").content.decode()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.USER_CHANGED, via="worker",
                                     details__webhook="disabled").exists()
    # Nothing is sent to a disabled endpoint; the waiting delivery goes once it is active again.
    due_now(sent)
    assert services.sweep() == 0
    endpoint.active = True
    services.save_endpoint(endpoint=endpoint, changed=["active"], created=False)
    assert endpoint.failing_since is None and endpoint.disabled_at is None
    services.sweep()
    assert len(receiver.wait_for(3)) == 3
    assert WebhookDelivery.objects.get().status == Status.DELIVERED
