"""Append events to the tamper-evident audit trail, and check the chain.

Each event's hash covers its content and the previous event's hash. Editing or deleting a row
directly in the database breaks the chain at that row, which `verify_chain` reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.db import transaction

from diagnosis.models import AuditChainHead, AuditEvent

GENESIS = "0" * 64
Action = AuditEvent.Action


def client_address(request) -> str | None:
    """The client's address as the server saw it (a trusted proxy is configured in front)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def _content(event: AuditEvent) -> bytes:
    fields = {
        "created_at": event.created_at.isoformat(),
        "actor": event.actor_username,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "patient_code": event.patient_code,
        "ip_address": event.ip_address,
        "via": event.via,
        "details": event.details,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(event: AuditEvent, previous_hash: str) -> str:
    return hashlib.sha256(previous_hash.encode() + _content(event)).hexdigest()


def record(action: str, *, actor=None, request=None, obj=None, patient_code: str = "", via: str = "",
           details: dict | None = None) -> AuditEvent:
    """Append one event. `obj` names the object acted on; never put identifying data in `details`."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1, defaults={"last_hash": GENESIS})
        event = AuditEvent(
            actor=actor,
            actor_username=actor.get_username() if actor is not None else "",
            action=action,
            object_type=type(obj).__name__.lower() if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            patient_code=patient_code,
            ip_address=client_address(request),
            via=via or ("web" if request is not None else ""),
            details=details or {},
            previous_hash=head.last_hash,
        )
        event.hash = event_hash(event, head.last_hash)
        event.save()
        head.last_hash = event.hash
        head.save(update_fields=["last_hash"])
    return event


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Walk the trail from the first event; return how many events are sound and the first break."""
    previous = GENESIS
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.previous_hash != previous:
            return checked, ChainBreak(event.id, "an event before it was deleted or changed "
                                                 "(its link to the previous event does not match)")
        if event_hash(event, previous) != event.hash:
            return checked, ChainBreak(event.id, "this event was changed after it was written")
        previous = event.hash
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.last_hash != previous:
        return checked, ChainBreak(0, "the newest events were deleted (the chain head does not match the last event)")
    return checked, None
