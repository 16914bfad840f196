"""Bad files through the web form (served by gunicorn) and the worker: a clear error or a correct
result for each, never a crash or a study that hangs."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from diagnosis.models import Prediction, Study, StudyImage
from tests.factories import phantom_bytes
from tests.reliability.badfiles import bad_files, long_thin_png, png_bomb, sixteen_bit_png
from tests.reliability.conftest import settle

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_each_bad_file_is_refused_with_its_reason_and_odd_good_ones_are_assessed_correctly(broken_site):
    broken_site.worker("badfiles")
    client, patient = broken_site.clinician()
    good = [("plain.png", phantom_bytes(0, True)), ("sixteen-bit.png", sixteen_bit_png(0)),
            ("rgba.png", phantom_bytes(0, True, mode="RGBA"))]
    bad = bad_files()

    response = client.post_study(patient, good + [(name, data) for name, data, _ in bad])
    assert response.status_code == 201, response.text
    rejected = {item["filename"]: item["reason"] for item in response.json()["rejected"]}
    assert set(rejected) == {name for name, _, _ in bad}
    for name, _, reason in bad:
        assert reason in rejected[name], (name, rejected[name])

    study_id = response.json()["url"].split("/")[2]
    [study] = settle([study_id], broken_site, timeout=60)
    assert study.status == Study.Status.COMPLETED and study.images.count() == 3
    # The same slice in 8-bit and RGBA decodes to the same pixels, so to the same assessment. The 16-bit copy
    # is windowed by its own percentiles (0.5 to 99.5), which moves its brightest pixels by a grey level or
    # two: the same assessment within a hundredth.
    plain, sixteen_bit, rgba = Prediction.objects.filter(image__study=study).order_by("image__position") \
        .values_list("probability", flat=True)
    assert abs(plain - rgba) < 1e-5 and abs(plain - sixteen_bit) < 0.01, (plain, sixteen_bit, rgba)


def test_a_submission_of_only_bad_files_stores_nothing_and_says_why(broken_site):
    client, patient = broken_site.clinician()
    response = client.post_study(patient, [(name, data) for name, data, _ in bad_files()])
    assert response.status_code == 400
    body = response.json()
    assert "nothing was stored" in body["errors"]["images"][0]
    assert len(body["rejected"]) == len(bad_files())
    assert not Study.objects.exists() and not StudyImage.objects.exists()


def test_a_stored_image_gone_bad_fails_its_study_at_once_with_a_reason(broken_site):
    """The stored copy is damaged between upload and assessment (storage fault, tampering)."""
    client, patient = broken_site.clinician()
    replacements = {"truncated": phantom_bytes(5, True)[:300], "bomb": png_bomb(), "html": b"<html></html>",
                    "long-thin": long_thin_png()}
    study_ids = {kind: client.submit(patient, [("scan.png", phantom_bytes(5, True))]) for kind in replacements}
    for kind, study_id in study_ids.items():  # no worker is running yet, so nothing has read them
        name = StudyImage.objects.get(study_id=study_id).file.name
        default_storage.delete(name)
        default_storage.save(name, ContentFile(replacements[kind]))

    broken_site.worker("badstore")
    for study in settle(list(study_ids.values()), broken_site, timeout=60):
        assert study.status == Study.Status.FAILED and study.error_code == "unreadable_image", study.error
        assert study.error.startswith("Image 1 could not be read from storage") and study.attempts == 1
    assert not Prediction.objects.filter(image__study_id__in=study_ids.values()).exists()
    # The worker survived them all: a normal study sent afterwards completes within 10 seconds.
    [study] = settle([client.submit(patient, [("scan.png", phantom_bytes(6, True))])], broken_site, timeout=10)
    assert study.status == Study.Status.COMPLETED
