"""The audit trail of significant actions, the admin's read-only clinical records, and the demo seed."""

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis import audit, services
from diagnosis.api import tokens
from diagnosis.models import ApiToken, AuditEvent, Consent, Patient, Study
from tests.factories import PASSWORD, StudyFactory

pytestmark = pytest.mark.django_db


def actions():
    return list(AuditEvent.objects.order_by("id").values_list("action", "actor_username"))


def test_login_logout_and_failed_login_are_audited_with_the_address(client, clinician_a):
    client.post(reverse("login"), {"username": "clinician_a", "password": "wrong"}, REMOTE_ADDR="10.1.2.3")
    client.post(reverse("login"), {"username": "clinician_a", "password": PASSWORD}, REMOTE_ADDR="10.1.2.3")
    client.post(reverse("logout"), REMOTE_ADDR="10.1.2.3")
    assert actions() == [("auth.login_failed", ""), ("auth.login", "clinician_a"), ("auth.logout", "clinician_a")]
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.details == {"username": "clinician_a"} and failed.ip_address == "10.1.2.3"
    assert "wrong" not in str(failed.details)


def test_viewing_a_study_and_its_image_is_audited(client_a, patient_a, clinician_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    image = study.images.get()
    client_a.get(reverse("study-detail", args=[study.pk]))
    response = client_a.get(reverse("study-image", args=[study.pk, image.pk]) + "?download=1")
    assert response["Content-Disposition"].startswith("attachment")
    assert [a for a, _ in actions() if a != "auth.login"] == ["study.viewed", "image.viewed"]
    assert AuditEvent.objects.get(action="image.viewed").details == {"download": True}
    assert AuditEvent.objects.get(action="study.viewed").patient_code == patient_a.code


def test_events_cannot_be_changed_or_deleted_through_the_application(admin_user):
    event = audit.record(AuditEvent.Action.LOGIN, actor=admin_user)
    event.action = "auth.logout"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()


def test_every_audit_action_is_recorded_somewhere(settings):
    """An action nothing records promises a trail that does not exist."""
    code = "\n".join(path.read_text() for app in ("diagnosis", "analytics", "brainscan")
                     for path in (Path(settings.BASE_DIR) / app).rglob("*.py")
                     if "migrations" not in path.parts and path.name != "models.py")
    unused = [name for name in AuditEvent.Action.names if not re.search(rf"\bAction\.{name}\b", code)]
    assert unused == []


@pytest.mark.parametrize("url_name", ["study", "prediction", "auditevent", "reading"])
def test_admin_shows_clinical_records_read_only(admin_client_, url_name, patient_a, clinician_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    services.assess_study(str(study.pk))
    listing = admin_client_.get(reverse(f"admin:diagnosis_{url_name}_changelist"))
    assert listing.status_code == 200
    assert admin_client_.get(reverse(f"admin:diagnosis_{url_name}_add")).status_code == 403
    model = listing.context["cl"].model
    obj = model.objects.first()
    if obj is not None:
        change = admin_client_.get(reverse(f"admin:diagnosis_{url_name}_change", args=[obj.pk]))
        assert change.status_code == 200 and b'name="_save"' not in change.content
        assert admin_client_.post(reverse(f"admin:diagnosis_{url_name}_delete", args=[obj.pk])).status_code == 403
        assert model.objects.filter(pk=obj.pk).exists()


def test_admin_manages_patients_and_consent_with_audit(admin_client_, clinician_a):
    response = admin_client_.post(reverse("admin:diagnosis_patient_add"), {
        "code": "P-ADMIN001", "care_team": [clinician_a.pk],
        "consents-TOTAL_FORMS": 0, "consents-INITIAL_FORMS": 0, "consents-MIN_NUM_FORMS": 0,
        "consents-MAX_NUM_FORMS": 1000,
    })
    assert response.status_code == 302, response.content[:2000]
    patient = Patient.objects.get(code="P-ADMIN001")
    admin_client_.post(reverse("admin:diagnosis_patient_changelist"),
                       {"action": "grant_ai_consent", "_selected_action": [patient.pk]})
    assert patient.has_active_consent(Consent.Scope.AI_ANALYSIS)
    admin_client_.post(reverse("admin:diagnosis_patient_changelist"),
                       {"action": "withdraw_ai_consent", "_selected_action": [patient.pk]})
    assert not patient.has_active_consent(Consent.Scope.AI_ANALYSIS)
    recorded = [a for a, _ in actions()]
    assert "patient.created" in recorded and "consent.granted" in recorded and "consent.withdrawn" in recorded
    assert all(e.patient_code == "P-ADMIN001" for e in AuditEvent.objects.filter(action__startswith="consent."))


def test_admin_lists_api_tokens_and_revokes_them_by_deleting_with_audit(admin_client_, admin_user, clinician_a,
                                                                         clinician_b):
    (secret, token_a), (_, token_b), (_, own) = (tokens.issue(user=user, request=None)
                                                for user in (clinician_a, clinician_b, admin_user))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/v1/models/").status_code == 200
    listing = admin_client_.get(reverse("admin:diagnosis_apitoken_changelist"))
    assert listing.status_code == 200 and b"clinician_a" in listing.content
    assert token_a.digest.encode() not in listing.content
    assert admin_client_.get(reverse("admin:diagnosis_apitoken_add")).status_code == 403
    change = admin_client_.get(reverse("admin:diagnosis_apitoken_change", args=[token_a.pk]))
    assert change.status_code == 200 and b'name="_save"' not in change.content

    deleted = admin_client_.post(reverse("admin:diagnosis_apitoken_delete", args=[token_a.pk]), {"post": "yes"})
    assert deleted.status_code == 302
    assert api.get("/api/v1/models/").status_code == 401
    admin_client_.post(reverse("admin:diagnosis_apitoken_changelist"),
                       {"action": "delete_selected", "_selected_action": [token_b.pk, own.pk], "post": "yes"})
    assert not ApiToken.objects.exists()
    revoked = AuditEvent.objects.filter(action=AuditEvent.Action.API_TOKEN_REVOKED)
    assert {(e.actor, e.via, e.object_id, e.details["user"]) for e in revoked} == {
        (admin_user, "admin", str(token_a.pk), "clinician_a"), (admin_user, "admin", str(token_b.pk), "clinician_b"),
        (admin_user, "admin", str(own.pk), "admin")}


def test_clinicians_cannot_reach_the_token_admin(client_a, clinician_a):
    _, token = tokens.issue(user=clinician_a, request=None)
    for url in (reverse("admin:diagnosis_apitoken_changelist"),
                reverse("admin:diagnosis_apitoken_delete", args=[token.pk])):
        response = client_a.post(url, {"post": "yes"})
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_clinicians_cannot_reach_the_admin(client_a):
    response = client_a.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_seed_demo_is_idempotent_and_uses_the_configured_password(settings, capsys):
    settings.DEMO_PASSWORD = "a-demo-password-for-tests"
    call_command("seed_demo")
    call_command("seed_demo")
    users = get_user_model().objects.order_by("username")
    assert [u.username for u in users] == ["admin", "clinician", "clinician2"]
    assert all(u.check_password("a-demo-password-for-tests") for u in users)
    assert users.get(username="admin").is_staff and not users.get(username="clinician").is_staff
    assert Patient.objects.filter(care_team__username="clinician").count() == 4
    assert Consent.objects.filter(withdrawn_at__isnull=True).count() == 6  # one patient is left without consent
    assert "BRAINSCAN_DEMO_PASSWORD" in capsys.readouterr().out
    studies = Study.objects.all()
    assert {s.submitted_by.username for s in studies} == {"clinician"} and {s.images.count() for s in studies} == {1}
    assert sorted(s.patient.code for s in studies) == ["P-DEMOA001"] * 3 + ["P-DEMOA002"] * 3 + ["P-DEMOA003"]


def test_seed_demo_generates_and_prints_a_password_when_unset(settings, capsys):
    settings.DEMO_PASSWORD = None
    call_command("seed_demo")
    out = capsys.readouterr().out
    password = out.split("BRAINSCAN_DEMO_PASSWORD to choose one): ")[1].split()[0]
    assert get_user_model().objects.get(username="clinician").check_password(password)
    call_command("seed_demo")
    assert "kept their passwords" in capsys.readouterr().out
    assert Study.objects.count() == 7  # the demo studies, one per image, submitted once


def _demo_labels(folder: Path) -> dict[str, list]:
    """What the served model says of each demo image: its label, or None where the gate refuses it."""
    from diagnosis.inference import get_predictor
    from ml.files import read_file

    found = {}
    for kind in ("tumor", "notumor", "not-a-brain-mri"):
        paths = sorted((folder / kind).iterdir())
        found[kind] = [a.label if a.usable else None
                       for a in get_predictor().assess([read_file(p).slices[0] for p in paths], with_features=False)]
    return found


def test_seed_demo_offers_held_out_real_slices_from_the_test_split(settings, tmp_path, dataset_dir, release_model,
                                                                   capsys):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    assert "held-out test split" in capsys.readouterr().out
    found = _demo_labels(tmp_path / "demo-images")
    assert len(found["tumor"]) == len(found["notumor"]) == 3
    assert found["not-a-brain-mri"] == [None]
    # Each slice is from the card's test split, and the worker's path labels it as the card's test scores
    # did: the demo shows the model's real hits and false alarms, not a chosen few.
    card = release_model.card
    recorded = {f"{Path(name).parent.name}-{Path(name).name}": score for name, score in
                zip(card["split"]["test_files"], card["metrics"]["test_predictions"]["scores"])}
    for kind in ("tumor", "notumor"):
        names = sorted(path.name for path in (tmp_path / "demo-images" / kind).iterdir())
        assert set(names) <= set(recorded)
        assert found[kind] == ["tumor" if recorded[name] >= card["threshold"]["value"] else "no_tumor"
                               for name in names]


def test_seed_demo_without_the_dataset_offers_phantoms_the_release_model_reads_correctly(settings, tmp_path, capsys,
                                                                                         release_model):
    settings.VAR_DIR, settings.DATASET_DIR = tmp_path, str(tmp_path / "no-dataset")
    call_command("seed_demo")
    assert len(list((tmp_path / "demo-images").rglob("phantom-*.png"))) == 6
    assert "synthetic phantoms" in capsys.readouterr().out
    assert _demo_labels(tmp_path / "demo-images") == {"tumor": ["tumor"] * 3, "notumor": ["no_tumor"] * 3,
                                                      "not-a-brain-mri": [None]}
