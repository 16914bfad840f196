"""The audit trail cannot be changed through the application or the admin, and `manage.py verify_audit`
finds the first broken link when a row is edited or deleted directly in the database."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from diagnosis import audit
from diagnosis.models import AuditEvent
from tests.factories import UserFactory
from tests.workers import ROOT, worker_env

pytestmark = pytest.mark.django_db


def record_events(count: int, actor=None) -> list[AuditEvent]:
    return [audit.record(AuditEvent.Action.STUDY_LISTED, actor=actor, via="web", details={"page": n})
            for n in range(count)]


@contextmanager
def tampering():
    """Raw SQL as a database owner would run it (on PostgreSQL, with the append-only trigger disabled)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE waits for no deferred FK check
            cursor.execute("ALTER TABLE diagnosis_auditevent DISABLE TRIGGER diagnosis_auditevent_append_only")
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE diagnosis_auditevent ENABLE TRIGGER diagnosis_auditevent_append_only")


def verify() -> tuple[str, int]:
    try:
        out = StringIO()
        call_command("verify_audit", stdout=out)
        return out.getvalue(), 0
    except CommandError as error:
        return str(error), error.returncode


def test_an_intact_trail_verifies():
    record_events(5)
    assert verify() == ("Audit trail intact: 5 events verified.\n", 0)


def test_an_edited_row_breaks_the_chain_at_that_row():
    events = record_events(5)
    with tampering() as cursor:
        cursor.execute("UPDATE diagnosis_auditevent SET actor_username = %s WHERE id = %s", ["mallory", events[2].pk])
    message, status = verify()
    assert status == 1
    assert message == (f"Audit trail broken at event {events[2].pk}: this event was changed after it was written (or "
                       "the chain was recomputed without the key). 2 events before it are sound.")


def test_a_deleted_row_breaks_the_chain_at_the_next_row():
    events = record_events(5)
    with tampering() as cursor:
        cursor.execute("DELETE FROM diagnosis_auditevent WHERE id = %s", [events[1].pk])
    message, status = verify()
    assert status == 1
    assert message.startswith(f"Audit trail broken at event {events[2].pk}: an event before it was deleted")
    assert message.endswith("1 event before it is sound.")


def rewrite_from(events: list[AuditEvent], index: int, key: str | None) -> None:
    """What someone who can write the database would do: change an event, then recompute every code after it with
    the application's own function, signing with `key` (None: plain SHA-256, as the trail once was)."""
    with tampering() as cursor:
        cursor.execute("UPDATE diagnosis_auditevent SET actor_username = %s WHERE id = %s",
                       ["mallory", events[index].pk])
        previous = events[index].previous_hash
        for event in AuditEvent.objects.filter(pk__gte=events[index].pk).order_by("id"):
            code = audit.event_hash(event, previous, key)
            cursor.execute("UPDATE diagnosis_auditevent SET previous_hash = %s, hash = %s WHERE id = %s",
                           [previous, code, event.pk])
            previous = code
        cursor.execute("UPDATE diagnosis_auditchainhead SET last_hash = %s", [previous])


@pytest.mark.parametrize("key", [None, "a guessed key, not the installation's one"])
def test_a_chain_recomputed_without_the_key_is_detected(key):
    events = record_events(5)
    rewrite_from(events, 1, key)
    message, status = verify()
    assert status == 1 and f"broken at event {events[1].pk}" in message and "without the key" in message


def test_with_the_key_a_rewrite_before_a_checkpoint_is_still_detected(settings, media_root,
                                                                      django_capture_on_commit_callbacks):
    """The stored checkpoints are out of the database writer's reach: even a leaked key cannot rewrite the past."""
    settings.AUDIT_CHECKPOINT_EVERY = 1
    with django_capture_on_commit_callbacks(execute=True):
        events = record_events(4)
    assert len(audit.checkpoints()) == 4
    rewrite_from(events, 1, settings.AUDIT_KEYS[next(iter(settings.AUDIT_KEYS))])
    message, status = verify()
    assert status == 1 and f"broken at event {events[1].pk}" in message and "differs from its checkpoint" in message


def test_keys_rotate_and_old_events_keep_verifying(settings):
    settings.AUDIT_KEYS = {"old": "o" * 40}
    record_events(2)
    settings.AUDIT_KEYS = {"new": "n" * 40, "old": "o" * 40}
    record_events(2)
    assert list(AuditEvent.objects.order_by("id").values_list("key_id", flat=True)) == ["old", "old", "new", "new"]
    assert verify()[1] == 0
    settings.AUDIT_KEYS = {"new": "n" * 40}
    message, status = verify()
    assert status == 1 and "key 'old', which this installation does not hold" in message


def test_events_from_before_keys_verify_with_plain_sha256():
    events = record_events(3)
    with tampering() as cursor:  # what the trail looked like before this version: unkeyed codes
        previous = audit.GENESIS
        for event in events:
            event.refresh_from_db()
            code = audit.event_hash(event, previous, None)
            cursor.execute("UPDATE diagnosis_auditevent SET previous_hash = %s, hash = %s, key_id = '' WHERE id = %s",
                           [previous, code, event.pk])
            previous = code
        cursor.execute("UPDATE diagnosis_auditchainhead SET last_hash = %s", [previous])
    record_events(1)
    assert verify() == ("Audit trail intact: 4 events verified.\n", 0)


def test_deleting_the_newest_rows_is_noticed_too():
    events = record_events(3)
    with tampering() as cursor:
        cursor.execute("DELETE FROM diagnosis_auditevent WHERE id = %s", [events[-1].pk])
    message, status = verify()
    assert status == 1 and "the newest events were deleted" in message


def test_the_application_cannot_change_or_delete_events():
    event = record_events(1)[0]
    event.details = {"page": 99}
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(details={})
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert verify()[1] == 0


def test_the_admin_shows_events_read_only(admin_client_):
    event = record_events(1)[0]
    change = reverse("admin:diagnosis_auditevent_change", args=[event.pk])
    assert admin_client_.get(change).status_code == 200  # viewable
    assert admin_client_.post(change, {"actor_username": "mallory"}).status_code == 403
    assert admin_client_.get(reverse("admin:diagnosis_auditevent_delete", args=[event.pk])).status_code == 403
    assert admin_client_.get(reverse("admin:diagnosis_auditevent_add")).status_code == 403
    changelist = reverse("admin:diagnosis_auditevent_changelist")
    assert "delete_selected" not in admin_client_.get(changelist).content.decode()
    admin_client_.post(changelist, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_deleting_a_user_keeps_their_events_and_the_chain():
    user = UserFactory(username="leaver")
    record_events(3, actor=user)
    user.delete()
    assert set(AuditEvent.objects.values_list("actor", "actor_username")) == {(None, "leaver")}
    assert verify()[1] == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's")
@pytest.mark.parametrize("statement", ["UPDATE diagnosis_auditevent SET actor_username = 'mallory'",
                                       "UPDATE diagnosis_auditevent SET actor_id = NULL, via = 'x'",
                                       "DELETE FROM diagnosis_auditevent"])
def test_postgresql_refuses_direct_changes(statement):
    record_events(2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditEvent.objects.count() == 2 and verify()[1] == 0


@pytest.mark.django_db(transaction=True)
def test_the_test_suite_can_still_empty_the_table():
    record_events(2)
    call_command("flush", interactive=False, verbosity=0)  # what every transactional test does afterwards
    assert not AuditEvent.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_command_exit_status():
    events = record_events(3)
    command = [sys.executable, "manage.py", "verify_audit"]
    env = {**worker_env(), "DJANGO_SETTINGS_MODULE": "brainscan.settings_test"}
    sound = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert sound.returncode == 0 and "3 events verified" in sound.stdout
    with tampering() as cursor:
        cursor.execute("UPDATE diagnosis_auditevent SET details = %s WHERE id = %s", ['{"page": 7}', events[0].pk])
    broken = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1 and f"broken at event {events[0].pk}" in broken.stderr
