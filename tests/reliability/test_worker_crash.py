"""kill -9 in the middle of an assessment: the study still completes, once.

The worker holds its claim for BRAINSCAN_TEST_PAUSE_AFTER_CLAIM_SECONDS (a test-only setting),
so the test can catch it mid-run: the study is `processing` with a live lease when the kill lands.
"""

import os
import signal

import pytest

from diagnosis.models import AuditEvent, Study
from tests.factories import phantom_bytes
from tests.reliability.conftest import assert_done_exactly_once, settle
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
HOLD = {"BRAINSCAN_TEST_PAUSE_AFTER_CLAIM_SECONDS": "2"}


def submit_and_catch_running(site, images: int = 2) -> Study:
    client, patient = site.clinician()
    study_id = client.submit(patient, [(f"slice{n}.png", phantom_bytes(n, n % 2 == 0)) for n in range(images)])
    return wait_for(lambda: Study.objects.filter(pk=study_id, status=Study.Status.PROCESSING).first(), 30,
                    interval=0.05, message=f"the study to be claimed; logs:\n{site.logs()}")


def test_killing_the_pool_process_mid_run_loses_nothing(broken_site):
    worker = broken_site.worker("crash-child", **HOLD)
    running = submit_and_catch_running(broken_site)
    [child] = worker.pool_pids()
    os.kill(child, signal.SIGKILL)

    # The worker's main process starts a new pool process; the message comes back at once (rejected on
    # worker loss) and its redelivery takes over the dead run's claim without waiting for the lease.
    [study] = settle([running.pk], broken_site, timeout=60)
    assert_done_exactly_once(study)
    assert study.attempts == 2
    assert child not in worker.pool_pids()
    assert "WorkerLostError" in worker.log() or "exited with 'signal 9" in worker.log()
    assert AuditEvent.objects.filter(action="prediction.started", object_id=str(study.pk)).count() == 2


def test_killing_the_whole_worker_mid_run_loses_nothing(broken_site):
    first = broken_site.worker("crash-all", **HOLD)
    running = submit_and_catch_running(broken_site)
    first.kill()  # main process and pool at once: nothing is acknowledged or rejected

    broken_site.worker("successor", **HOLD)
    # The dead run's lease (25 s here) expires, the sweeper puts the study back and sends it again.
    [study] = settle([running.pk], broken_site, timeout=90)
    assert_done_exactly_once(study)
    assert study.attempts == 2
    assert AuditEvent.objects.filter(action="study.requeued", object_id=str(study.pk)).exists()


def test_a_study_that_keeps_killing_its_worker_ends_failed_with_a_reason(broken_site):
    """The attempt budget stops a poison study from crashing workers forever."""
    worker = broken_site.worker("poison", **HOLD)
    client, patient = broken_site.clinician()
    study_id = client.submit(patient, [("slice.png", phantom_bytes(0, True))])
    killed = set()
    for _ in range(3):  # BRAINSCAN_STUDY_MAX_ATTEMPTS
        wait_for(lambda: Study.objects.filter(pk=study_id, status=Study.Status.PROCESSING,
                                              attempts=len(killed) + 1).exists(), 60, interval=0.05,
                 message=f"attempt {len(killed) + 1}; logs:\n{broken_site.logs()}")
        child = wait_for(lambda: [pid for pid in worker.pool_pids() if pid not in killed], 30)[0]
        os.kill(child, signal.SIGKILL)
        killed.add(child)

    [study] = settle([study_id], broken_site, timeout=60)
    assert study.status == Study.Status.FAILED and study.error_code == "attempts_exhausted"
    assert "did not finish after 3 attempts" in study.error


def test_killing_the_worker_half_way_through_a_series_assesses_each_slice_once(broken_site):
    """Chunks already stored stay; the redelivered run assesses only the slices still pending."""
    from diagnosis.models import Prediction
    from tests.privacy.samples import series_files

    slices = 120
    worker = broken_site.worker("crash-series", BRAINSCAN_INFERENCE_CHUNK="4")
    client, patient = broken_site.clinician()
    files = [(f"IM{n:04d}", data) for n, (_, data) in enumerate(series_files(slices, size=128))]
    study_id = client.submit(patient, files)
    stored = wait_for(lambda: Prediction.objects.filter(image__study_id=study_id).count() or None, 60,
                      interval=0.02, message=f"the first chunk to be stored; logs:\n{broken_site.logs()}")
    [child] = worker.pool_pids()
    os.kill(child, signal.SIGKILL)
    assert stored < slices, "the series finished before the kill landed"

    [study] = settle([study_id], broken_site, timeout=120)
    assert study.status == Study.Status.COMPLETED, (study.status, study.error)
    predictions = Prediction.objects.filter(image__study=study)
    assert predictions.count() == slices
    assert predictions.values("image").distinct().count() == slices
    assert study.attempts == 2
