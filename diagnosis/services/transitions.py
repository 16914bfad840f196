"""The one way a study changes state: a conditional UPDATE on the state it is in.

    queued -> processing -> completed | unassessable | failed
    queued | processing -> cancelled (consent withdrawn)
    failed | cancelled -> queued (run again)

The caller's queryset names the states (and the claim) a study may be in; a study that has moved
meanwhile is simply not updated, so two deliveries of one task, or a worker and the sweeper, can
never both act on it. The fields every move of a kind resets are reset here, once.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from diagnosis.models import Study

Status = Study.Status
FINAL = frozenset({Status.COMPLETED, Status.UNASSESSABLE, Status.FAILED, Status.CANCELLED})


def move(studies: QuerySet, to: str, **fields) -> int:
    """Move every study of `studies` to `to`; returns how many moved.

    Leaving `processing` drops the claim and its lease; a final state is stamped with its time; back
    in the queue a study has no end time, error or result. `fields` add to (or override) these.
    """
    now = timezone.now()
    values: dict = {"status": to, "updated_at": now}
    if to != Status.PROCESSING:
        values.update(claim="", lease_expires_at=None)
    if to in FINAL:
        values["finished_at"] = now
    if to == Status.QUEUED:
        values.update(finished_at=None)
    if to in (Status.QUEUED, Status.PROCESSING):
        values.update(error="", error_code="")
    values.update(fields)
    return studies.update(**values)
