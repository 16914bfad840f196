"""The database refuses a write while the worker stores a result: nothing half-written, then a retry.

A trigger in the test database (SQLite or PostgreSQL) refuses to insert the prediction of a study's
second image while a row sits in `test_fault`: the first image's prediction has already been inserted
in the same transaction when the second fails, so atomicity is what keeps it out.
"""

import pytest
from django.db import connection

from diagnosis.models import AuditEvent, Prediction, Study
from tests.factories import phantom_bytes
from tests.reliability.conftest import assert_done_exactly_once, settle
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAULT = {
    "sqlite": (
        ["CREATE TABLE test_fault (id integer)",
         """CREATE TRIGGER test_fault_prediction BEFORE INSERT ON diagnosis_prediction
            WHEN EXISTS (SELECT 1 FROM test_fault)
             AND (SELECT position FROM diagnosis_studyimage WHERE id = NEW.image_id) = 1
            BEGIN SELECT RAISE(ABORT, 'injected failure: the database refused the write'); END"""],
        ["DROP TRIGGER IF EXISTS test_fault_prediction", "DROP TABLE IF EXISTS test_fault"],
    ),
    "postgresql": (
        ["CREATE TABLE test_fault (id integer)",
         """CREATE FUNCTION test_fault_prediction() RETURNS trigger AS $$
            BEGIN
              IF EXISTS (SELECT 1 FROM test_fault)
                 AND (SELECT position FROM diagnosis_studyimage WHERE id = NEW.image_id) = 1 THEN
                RAISE EXCEPTION 'injected failure: the database refused the write';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql""",
         """CREATE TRIGGER test_fault_prediction BEFORE INSERT ON diagnosis_prediction
            FOR EACH ROW EXECUTE FUNCTION test_fault_prediction()"""],
        ["DROP TRIGGER IF EXISTS test_fault_prediction ON diagnosis_prediction",
         "DROP FUNCTION IF EXISTS test_fault_prediction()", "DROP TABLE IF EXISTS test_fault"],
    ),
}


@pytest.fixture
def refusing_database():
    """Turn on with `fault(True)`, off with `fault(False)`; the trigger is removed after the test."""
    create, drop = FAULT[connection.vendor]

    def fault(on: bool) -> None:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO test_fault VALUES (1)" if on else "DELETE FROM test_fault")

    with connection.cursor() as cursor:
        for statement in create:
            cursor.execute(statement)
    try:
        yield fault
    finally:
        with connection.cursor() as cursor:
            for statement in drop:
                cursor.execute(statement)


def test_a_refused_write_stores_nothing_and_the_retry_completes_the_study(broken_site, refusing_database):
    refusing_database(True)
    worker = broken_site.worker("dbfault")
    client, patient = broken_site.clinician()
    study_id = client.submit(patient, [("a.png", phantom_bytes(1, True)), ("b.png", phantom_bytes(2, False))])

    wait_for(lambda: "injected failure" in worker.log(), 60, message=f"the refused write; logs:\n{broken_site.logs()}")
    assert not Prediction.objects.filter(image__study_id=study_id).exists()
    study = Study.objects.get(pk=study_id)
    assert study.status in (Study.Status.QUEUED, Study.Status.PROCESSING)  # released for the retry, or retrying
    assert "retry" in worker.log().lower()

    refusing_database(False)
    [study] = settle([study_id], broken_site, timeout=60)
    assert_done_exactly_once(study)
    assert study.attempts == 1  # an outage gives its attempt back; only crashes and time limits use them up
    assert AuditEvent.objects.filter(action="prediction.started", object_id=str(study.pk)).count() >= 2
