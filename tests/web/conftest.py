"""Fixtures for the page tests: studies assessed by the real predictor, in this process."""

import pytest

from diagnosis import services
from diagnosis.models import Study
from tests.factories import StudyFactory


def assessed_study(patient, clinician, images: int = 2) -> Study:
    """A study run through the real assessment service (the same code a worker runs)."""
    study = StudyFactory(patient=patient, submitted_by=clinician, images=images)
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.COMPLETED, study.error
    return study


@pytest.fixture
def completed_study(clinician_a, patient_a):
    return assessed_study(patient_a, clinician_a)
