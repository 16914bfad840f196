"""Append events to the tamper-evident audit trail, and check the chain.

Threat model: someone who can write the database (a stolen database password, a careless script, a
malicious administrator of the database server) but not read the application's settings. Each
event carries an HMAC, keyed by a secret kept outside the database (BRAINSCAN_AUDIT_KEYS), over its
content and the previous event's code, so a changed, deleted or inserted event breaks the chain, and
the chain cannot be recomputed without the key. Every BRAINSCAN_AUDIT_CHECKPOINT_EVERY events a signed
checkpoint (the event's id and code) is written to the file storage and to the log, which a database
writer cannot rewrite: even with the key, events older than the last checkpoint cannot be rewritten
unnoticed. Keys rotate by putting a new one first; old ones stay listed to verify older events.
Events written before keys existed (key id "") are checked with plain SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from diagnosis.models import AuditChainHead, AuditEvent

GENESIS = "0" * 64
CHECKPOINT_FOLDER = "audit/checkpoints"
Action = AuditEvent.Action
log = logging.getLogger("brainscan.audit")


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


def current_key() -> tuple[str, str]:
    key_id = next(iter(settings.AUDIT_KEYS))
    return key_id, settings.AUDIT_KEYS[key_id]


def event_hash(event: AuditEvent, previous_hash: str, key: str | None) -> str:
    """The event's code: HMAC-SHA256 with `key`, or plain SHA-256 for events from before keys (key None)."""
    message = previous_hash.encode() + _content(event)
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def record(action: str, *, actor=None, request=None, obj=None, patient_code: str = "", via: str = "",
           details: dict | None = None) -> AuditEvent:
    """Append one event. `obj` names the object acted on; never put identifying data in `details`."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    key_id, key = current_key()
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
            key_id=key_id,
        )
        event.hash = event_hash(event, head.last_hash, key)
        event.save()
        head.last_hash = event.hash
        head.save(update_fields=["last_hash"])
        if event.pk % settings.AUDIT_CHECKPOINT_EVERY == 0:
            transaction.on_commit(lambda: write_checkpoint(event.pk, event.hash))
    return event


def _checkpoint_signature(event_id: int, code: str) -> tuple[str, str]:
    key_id, key = current_key()
    return key_id, hmac.new(key.encode(), f"checkpoint:{event_id}:{code}".encode(), hashlib.sha256).hexdigest()


def write_checkpoint(event_id: int, code: str) -> None:
    """Record, outside the database, that event `event_id` had code `code` (storage and log; best effort)."""
    key_id, signature = _checkpoint_signature(event_id, code)
    body = {"event_id": event_id, "hash": code, "key_id": key_id, "signature": signature}
    log.info("audit checkpoint event=%s hash=%s", event_id, code)
    try:
        default_storage.save(f"{CHECKPOINT_FOLDER}/{event_id:012d}.json", ContentFile(json.dumps(body).encode()))
    except Exception:  # the log line stands; the next checkpoint tries the storage again
        log.warning("Could not store the audit checkpoint of event %s", event_id, exc_info=True)


def checkpoints() -> dict[int, dict]:
    """The stored checkpoints by event id (unreadable ones are reported by verify_chain)."""
    found = {}
    try:
        _, names = default_storage.listdir(CHECKPOINT_FOLDER)
    except (FileNotFoundError, OSError):
        return found
    for name in sorted(names):
        with default_storage.open(f"{CHECKPOINT_FOLDER}/{name}", "rb") as handle:
            body = json.loads(handle.read())
        found[int(body["event_id"])] = body
    return found


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Walk the trail from the first event; return how many events are sound and the first break."""
    marks = checkpoints()
    for event_id, mark in marks.items():
        key = settings.AUDIT_KEYS.get(mark.get("key_id", ""))
        expected = key and hmac.new(key.encode(), f"checkpoint:{event_id}:{mark['hash']}".encode(),
                                    hashlib.sha256).hexdigest()
        if not expected or not hmac.compare_digest(expected, mark.get("signature", "")):
            return 0, ChainBreak(event_id, "its stored checkpoint is not signed by a key of this installation")
    previous, checked, last_id = GENESIS, 0, 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.previous_hash != previous:
            return checked, ChainBreak(event.id, "an event before it was deleted or changed "
                                                 "(its link to the previous event does not match)")
        if event.key_id and event.key_id not in settings.AUDIT_KEYS:
            return checked, ChainBreak(event.id, f"it is signed with key {event.key_id!r}, which this installation "
                                                 "does not hold")
        key = settings.AUDIT_KEYS[event.key_id] if event.key_id else None
        if not hmac.compare_digest(event_hash(event, previous, key), event.hash):
            return checked, ChainBreak(event.id, "this event was changed after it was written (or the chain was "
                                                 "recomputed without the key)")
        if event.id in marks and marks[event.id]["hash"] != event.hash:
            return checked, ChainBreak(event.id, "the chain was rewritten: this event differs from its checkpoint")
        previous, last_id = event.hash, event.id
        checked += 1
    missing = [event_id for event_id in marks if event_id > last_id]
    if missing:
        return checked, ChainBreak(min(missing), "events up to a stored checkpoint were deleted")
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.last_hash != previous:
        return checked, ChainBreak(0, "the newest events were deleted (the chain head does not match the last event)")
    return checked, None
