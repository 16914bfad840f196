"""The claim rules that make a redelivery, an outage and a dead worker harmless, in-process.

The same rules are shown with real processes in test_worker_crash.py and test_broker_outage.py.
"""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from diagnosis import services
from diagnosis.inference import get_predictor
from diagnosis.models import Study
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db
DELIVERY = "985fd992-58fa-4831-8315-20002a41b82a"


@pytest.fixture
def study(patient_a, clinician_a):
    return StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)


def test_a_redelivered_message_takes_over_its_own_dead_run_until_attempts_run_out(study, settings):
    settings.STUDY_MAX_ATTEMPTS = 3
    first = services.new_claim_token(DELIVERY)
    assert services.claim([study.pk], first, DELIVERY)
    # Another message (the sweeper's, say) must wait for the lease; the same message may take over.
    assert services.claim([study.pk], services.new_claim_token("another-delivery"), "another-delivery") == []
    second = services.new_claim_token(DELIVERY)
    assert services.claim([study.pk], second, DELIVERY)
    assert services.claim([study.pk], services.new_claim_token(DELIVERY), DELIVERY)
    assert Study.objects.get(pk=study.pk).attempts == 3
    # The run that was taken over can no longer store anything.
    assert not services.finish(study, second, get_predictor())

    assert services.claim([study.pk], services.new_claim_token(DELIVERY), DELIVERY) == []
    study.refresh_from_db()
    assert study.status == Study.Status.FAILED and study.error_code == "attempts_exhausted"


@pytest.mark.parametrize("error, attempts_after", [(OperationalError("database restarting"), 0),
                                                   (SoftTimeLimitExceeded(), 1)])
def test_an_outage_gives_the_attempt_back_but_a_time_limit_does_not(study, monkeypatch, error, attempts_after):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("diagnosis.services.assessment.get_predictor", fail)
    with pytest.raises(services.TransientError):
        services.assess_study(str(study.pk), delivery=DELIVERY)
    study.refresh_from_db()
    assert study.status == Study.Status.QUEUED and study.claim == "" and study.attempts == attempts_after


def test_the_sweeper_sends_a_study_whose_lease_expired_at_once(study, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("diagnosis.tasks.assess_study_task.apply_async", lambda args, **kw: sent.append(args[0]))
    services.claim([study.pk], services.new_claim_token(DELIVERY), DELIVERY)
    # Sent a moment ago, so not stale; but its worker died and the lease ran out.
    Study.objects.filter(pk=study.pk).update(enqueued_at=timezone.now(),
                                             lease_expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.requeue_stale() == 1
    assert sent == [str(study.pk)]
    study.refresh_from_db()
    assert study.status == Study.Status.QUEUED and study.enqueued_at is not None


def test_a_study_whose_send_failed_is_sent_by_the_next_sweep(study, monkeypatch, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError as BrokerDown

    def broker_down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr("diagnosis.tasks.assess_study_task.apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        services.enqueue(study)
    assert Study.objects.get(pk=study.pk).enqueued_at is None  # marked unsent, not left looking fresh

    sent = []
    monkeypatch.setattr("diagnosis.tasks.assess_study_task.apply_async", lambda args, **kw: sent.append(args[0]))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.requeue_stale() == 1
    assert sent == [str(study.pk)]
