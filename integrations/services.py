"""Every write of the integrations app: the webhook outbox, sending under a lease, the sweep, endpoints.

The outbox: `queue_deliveries` receives diagnosis.events.study_finished inside the transaction that moves
the study to its final state, writes one delivery per active endpoint subscribed to the event, and sends
their tasks once that transaction commits. A delivery is marked delivered only after a 2xx answer.

Leases: `claim` is one conditional UPDATE that takes a due delivery nobody holds (or whose holder's lease
expired: its worker died) and counts an attempt; the sender records the outcome only while it still holds
the claim. The periodic sweep sends again what is due, including what a dead worker held.

Audit: a delivery that reached its receiver is a study's data leaving BrainScan: `study.exported` with
format "webhook". Changes to endpoints (and "send again") are recorded as `user.changed` on the endpoint or
delivery (an integration's account settings): no audit action is added for them.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from diagnosis import audit
from diagnosis.models import AuditEvent, Study
from integrations import delivery as network
from integrations import selectors
from integrations.models import EVENT_NAMES, WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)
Action = AuditEvent.Action
Status = WebhookDelivery.Status
RETRYABLE_STATUSES = frozenset({408, 429})
MAX_DELAY_MINUTES = 8 * 60
SWEEP_BATCH = 500


def lease() -> timedelta:
    """How long a sender holds a delivery: longer than one attempt can take (its time limits), and short."""
    return timedelta(seconds=settings.WEBHOOK_CONNECT_SECONDS + settings.WEBHOOK_READ_SECONDS + 20)


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4 ... minutes after the 1st, 2nd, 3rd ... failed attempt, at most 8 hours (12 attempts: ~a day)."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), MAX_DELAY_MINUTES))


# --- The outbox --------------------------------------------------------------------------------------------


def queue_deliveries(sender=None, *, study: Study, **kwargs) -> list[WebhookDelivery]:
    """Receiver of study_finished: one delivery per active endpoint subscribed to the study's event, written in
    the caller's transaction, and their tasks sent once it commits."""
    event = f"study.{study.status}"
    if event not in EVENT_NAMES:
        return []
    endpoints = [endpoint for endpoint in WebhookEndpoint.objects.filter(active=True) if event in endpoint.events]
    if not endpoints:
        return []
    body = selectors.webhook_body(study, event)
    deliveries = [WebhookDelivery.objects.create(endpoint=endpoint, event=event, study_id=study.pk, payload=body)
                  for endpoint in endpoints]
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: enqueue(ids))
    return deliveries


def enqueue(delivery_ids: list[int]) -> None:
    """Send each delivery's task; if the broker cannot take one, the sweep sends it when it is due."""
    from integrations.tasks import deliver_webhook_task

    for delivery_id in delivery_ids:
        try:
            deliver_webhook_task.apply_async(args=[delivery_id], retry=False)
        except Exception as error:  # any broker failure: the delivery is safe in the database
            log.warning("Could not enqueue webhook delivery %s (%s); the sweep will send it", delivery_id,
                        type(error).__name__)


# --- Sending -----------------------------------------------------------------------------------------------


def claim(delivery_id: int) -> str | None:
    """Atomically take a due delivery that nobody is sending; returns the claim's token, or None.

    Free means: no claim (possibly reserved by the sweep, which sets only a lease), or a lease that expired.
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    free = Q(claim="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    taken = WebhookDelivery.objects.filter(
        free, pk=delivery_id, status__in=(Status.PENDING, Status.FAILED), next_attempt_at__lte=now,
        endpoint_id__in=selectors.active_endpoints(),
    ).update(claim=token, lease_expires_at=now + lease(), attempts=F("attempts") + 1)
    return token if taken else None


def deliver(delivery_id: int) -> str:
    """Send one delivery if it is due and free; record the attempt. Returns what happened, for the log."""
    token = claim(delivery_id)
    if token is None:
        return "skipped: delivered, not due, or held by another sender"
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None:  # its endpoint was deleted meanwhile
        return "skipped: the endpoint was deleted"
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    now = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "BrainScan-Webhooks/1",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(delivery.endpoint.secret).sign(delivery.webhook_id, now, body),
    }
    try:
        target = network.resolve(delivery.endpoint.url)  # resolved once; the POST goes to this address
        answer = network.post(target, body, headers)
    except network.Unresolvable as error:
        return _record(delivery, token, retry=True, error=str(error))
    except network.UrlRefused as error:
        return _record(delivery, token, retry=False, error=f"Refused: {error}")
    except network.SendError as error:
        return _record(delivery, token, retry=True, error=str(error), duration_ms=error.duration_ms)
    if 200 <= answer.status < 300:
        return _record(delivery, token, ok=True, answer=answer)
    retry = answer.status >= 500 or answer.status in RETRYABLE_STATUSES
    reason = "a redirect (never followed)" if 300 <= answer.status < 400 else "an error"
    return _record(delivery, token, retry=retry, answer=answer, error=f"HTTP {answer.status}: {reason}")


def _record(delivery: WebhookDelivery, token: str, *, ok: bool = False, retry: bool = False, error: str = "",
            answer: network.Answer | None = None, duration_ms: float = 0.0) -> str:
    """Record the attempt and its outcome, if this sender still holds the delivery."""
    now = timezone.now()
    endpoint = delivery.endpoint
    with transaction.atomic():
        WebhookAttempt.objects.create(delivery=delivery, at=now, status_code=answer.status if answer else None,
                                      duration_ms=answer.duration_ms if answer else duration_ms, error=error[:500],
                                      response_body=answer.body if answer else "")
        held = WebhookDelivery.objects.filter(pk=delivery.pk, claim=token)
        release = {"claim": "", "lease_expires_at": None}
        if ok:
            if held.update(status=Status.DELIVERED, delivered_at=now, last_error="", **release):
                WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
                audit.record(Action.STUDY_EXPORTED, obj=delivery, patient_code=delivery.payload["data"]["patient"],
                             via="worker", details={"format": "webhook", "event": delivery.event,
                                                    "study": str(delivery.study_id), "endpoint": endpoint.pk,
                                                    "attempts": delivery.attempts})
            return "delivered"
        attempts = delivery.attempts  # read after the claim, which counted this attempt
        gave_up = not retry or attempts >= settings.WEBHOOK_MAX_ATTEMPTS
        held.update(status=Status.GIVEN_UP if gave_up else Status.FAILED, last_error=error[:500],
                    next_attempt_at=now if gave_up else now + retry_delay(attempts), **release)
        _note_failure(endpoint, now, error)
    return f"{'given up' if gave_up else 'failed, will retry'}: {error}"


def _note_failure(endpoint: WebhookEndpoint, now, error: str) -> None:
    """Mark the endpoint failing since its first failure; disable it after a day of nothing but failures."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    since = WebhookEndpoint.objects.filter(pk=endpoint.pk).values_list("failing_since", flat=True).first()
    if since is None or now - since < selectors.DISABLE_AFTER:
        return
    reason = f"Every delivery failed since {since:%Y-%m-%d %H:%M} UTC; the last error: {error}"
    if WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(active=False, disabled_at=now,
                                                                          disabled_reason=reason[:255]):
        log.warning("Webhook endpoint %s disabled: %s", endpoint.pk, reason)
        audit.record(Action.USER_CHANGED, obj=endpoint, via="worker",
                     details={"webhook": "disabled", "reason": "failing for a day"})


def sweep() -> int:
    """Send again every due delivery: retries whose time came, tasks the broker lost, and deliveries whose
    sender died (lease expired). Each is reserved for a while (a lease without a claim) so the next sweep does
    not send its task again while it waits in the queue; the task's claim takes it over."""
    now = timezone.now()
    ids = list(selectors.due_deliveries(now).order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    if not ids:
        return 0
    selectors.due_deliveries(now).filter(pk__in=ids).update(claim="", lease_expires_at=now + lease())
    enqueue(ids)
    return len(ids)


# --- Endpoints and administration ------------------------------------------------------------------------


def register_endpoint(*, url: str, events: list[str] | None = None, actor=None, request=None,
                      via: str = "command") -> WebhookEndpoint:
    """Validate (the URL guard included) and save a new active endpoint with a fresh secret; raises
    django.core.exceptions.ValidationError."""
    endpoint = WebhookEndpoint(url=url, events=list(dict.fromkeys(events)) if events else list(EVENT_NAMES))
    endpoint.full_clean()
    with transaction.atomic():
        endpoint.save()
        audit.record(Action.USER_CHANGED, actor=actor, request=request, obj=endpoint, via=via,
                     details={"webhook": "created", "events": endpoint.events})
    return endpoint


def save_endpoint(*, endpoint: WebhookEndpoint, changed: list[str], created: bool, actor=None, request=None,
                  via: str = "admin") -> WebhookEndpoint:
    """Save an endpoint validated by the admin's form. Activating it again clears the failure it was disabled
    for, so its waiting deliveries are sent at the next sweep."""
    with transaction.atomic():
        if endpoint.active and (endpoint.disabled_at or endpoint.failing_since):
            endpoint.disabled_at, endpoint.disabled_reason, endpoint.failing_since = None, "", None
        elif not endpoint.active and "active" in changed:
            endpoint.disabled_at, endpoint.disabled_reason = timezone.now(), "Disabled by an administrator."
        endpoint.save()
        audit.record(Action.USER_CHANGED, actor=actor, request=request, obj=endpoint, via=via,
                     details={"webhook": "created" if created else "changed", "fields": sorted(changed),
                              "events": endpoint.events, "active": endpoint.active})
    return endpoint


def delete_endpoint(*, endpoint: WebhookEndpoint, actor=None, request=None, via: str = "admin") -> None:
    with transaction.atomic():
        audit.record(Action.USER_CHANGED, actor=actor, request=request, obj=endpoint, via=via,
                     details={"webhook": "deleted", "host": urlsplit(endpoint.url).hostname or ""})
        endpoint.delete()


def send_again(*, deliveries, actor=None, request=None, via: str = "admin") -> int:
    """Queue the given deliveries for a fresh series of attempts (those being sent right now are left alone)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(deliveries.values_list("pk", flat=True))
        free = WebhookDelivery.objects.filter(pk__in=ids).exclude(~Q(claim=""), lease_expires_at__gte=now)
        chosen = list(free.values_list("pk", flat=True))
        WebhookDelivery.objects.filter(pk__in=chosen).update(status=Status.PENDING, attempts=0, next_attempt_at=now,
                                                              claim="", lease_expires_at=None, delivered_at=None)
        for delivery in WebhookDelivery.objects.filter(pk__in=chosen):
            audit.record(Action.USER_CHANGED, actor=actor, request=request, obj=delivery, via=via,
                         details={"webhook": "send_again", "event": delivery.event, "study": str(delivery.study_id)})
        transaction.on_commit(lambda: enqueue(chosen))
    return len(chosen)
