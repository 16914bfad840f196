"""What other parts of BrainScan (and hospital integrations) may listen to.

`study_finished` is sent inside the transaction that moves a study to a final state (completed,
unassessable, failed, cancelled): a receiver that writes rows (an outbox of notifications) commits or
rolls back with the move itself, so no event is lost or sent for a move that did not happen.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent with sender=Study and study=<the Study, its status already the new one>.
study_finished = Signal()


def finished(study) -> None:
    """Announce that `study` (refreshed: its new status, result and error) reached a final state."""
    study_finished.send(sender=type(study), study=study)
