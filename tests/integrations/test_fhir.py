"""FHIR R4 exports: a study as a DiagnosticReport, the study list as a searchset Bundle, validated with the
fhir.resources R4B models; access like the rest of the API; every export audited."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from diagnosis.models import AuditEvent
from tests.api.helpers import error_of
from tests.factories import StudyFactory
from tests.integrations.conftest import SHA, VERSION, finish

FHIR = "application/fhir+json"


def url(study) -> str:
    return f"/api/v1/studies/{study.pk}/fhir/"


def report_of(response) -> DiagnosticReport:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == FHIR
    return DiagnosticReport.model_validate_json(response.content)


def contained(report: DiagnosticReport, kind) -> list:
    return [resource for resource in report.contained or [] if isinstance(resource, kind)]


def test_a_completed_study_with_a_tumor_a_clear_and_an_unassessable_image(api_a, patient_a, clinician_a):
    study = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a, images=3), [0.93, 0.21, "rejected"])
    report = report_of(api_a.get(url(study)))

    assert report.status == "final" and report.id == str(study.pk)
    assert report.category[0].coding[0].system == "http://terminology.hl7.org/CodeSystem/v2-0074"
    assert report.category[0].coding[0].code == "RAD"
    assert report.code.coding[0].display == "AI assessment of brain MRI for tumor"
    assert report.subject.identifier.system == "urn:brainscan:patient-code"
    assert report.subject.identifier.value == patient_a.code
    assert report.effectiveDateTime and report.issued
    assert report.conclusion.startswith("Tumor suspected: highest tumor probability 0.930 (threshold 0.600)")
    assert "1 image(s) could not be assessed" in report.conclusion
    assert report.conclusionCode[0].coding[0].code == "tumor"

    [device] = contained(report, Device)
    assert device.version[0].value == VERSION and device.identifier[0].value == SHA
    tumor, clear, refused = contained(report, Observation)
    assert [r.reference for r in report.result] == ["#image-1", "#image-2", "#image-3"]
    assert all(o.device.reference == f"#{device.id}" for o in (tumor, clear, refused))
    assert float(tumor.valueQuantity.value) == pytest.approx(0.93) and tumor.valueQuantity.code == "1"
    assert tumor.interpretation[0].coding[0].code == "POS" and clear.interpretation[0].coding[0].code == "NEG"
    components = {c.code.coding[0].code: c for c in tumor.component}
    assert components["label"].valueCodeableConcept.coding[0].code == "tumor"
    assert float(components["decision-threshold"].valueQuantity.value) == pytest.approx(0.6)
    assert clear.component[0].valueCodeableConcept.coding[0].code == "no-tumor"
    assert refused.valueQuantity is None and refused.interpretation is None
    assert refused.dataAbsentReason.coding[0].code == "not-performed"
    assert refused.note[0].text == "This does not look like a brain MRI slice."
    assert refused.component[0].valueCodeableConcept.coding[0].code == "not_brain_mri"

    event = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_EXPORTED)
    assert event.details == {"format": "fhir"} and event.object_id == str(study.pk) and event.via == "api"
    assert event.patient_code == patient_a.code and event.actor == clinician_a


def test_a_study_with_no_tumor(api_a, patient_a, clinician_a):
    study = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a), [0.12])
    report = report_of(api_a.get(url(study)))
    assert report.conclusionCode[0].coding[0].code == "no-tumor"
    [observation] = contained(report, Observation)
    assert observation.interpretation[0].coding[0].code == "NEG"
    assert float(observation.valueQuantity.value) == pytest.approx(0.12)


def test_an_unassessable_study_is_a_final_report_without_a_result(api_a, patient_a, clinician_a):
    study = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a), ["rejected"])
    report = report_of(api_a.get(url(study)))
    assert report.status == "final" and report.conclusionCode is None
    assert report.conclusion.startswith("No image could be assessed")
    [observation] = contained(report, Observation)
    assert observation.dataAbsentReason and observation.valueQuantity is None


@pytest.mark.parametrize(("status", "fhir_status"), [("queued", "registered"), ("processing", "preliminary"),
                                                     ("failed", "cancelled"), ("cancelled", "cancelled")])
def test_an_unfinished_or_failed_study_is_a_report_without_observations(api_a, patient_a, clinician_a, status,
                                                                        fhir_status):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, status=status,
                         error="The analysis failed." if status == "failed" else "")
    report = report_of(api_a.get(url(study)))
    assert report.status == fhir_status and report.contained is None and report.result is None


def test_others_get_404_and_anonymous_401_in_the_api_error_shape(api_b, api_anonymous, patient_a, clinician_a):
    study = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    for client, status, code in [(api_b, 404, "not_found"), (api_anonymous, 401, "not_authenticated")]:
        response = client.get(url(study))
        assert response.status_code == status and response["Content-Type"] == "application/json"
        assert error_of(response)["code"] == code
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_EXPORTED).exists()


def test_an_administrator_sees_every_report(admin_user, patient_a, clinician_a):
    from tests.api.helpers import token_client

    study = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    assert report_of(token_client(admin_user).get(url(study))).subject.identifier.value == patient_a.code


def test_the_list_as_a_searchset_bundle_keeps_filters_and_pagination(api_a, patient_a, patient_b, clinician_a,
                                                                      clinician_b):
    mine = [finish(StudyFactory(patient=patient_a, submitted_by=clinician_a), [p]) for p in (0.9, 0.3)]
    unassessable = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a), ["rejected"])
    StudyFactory(patient=patient_a, submitted_by=clinician_a)  # queued: no final report yet
    finish(StudyFactory(patient=patient_b, submitted_by=clinician_b))  # another clinician's patient

    response = api_a.get("/api/v1/studies/?format=fhir")
    assert response.status_code == 200 and response["Content-Type"] == FHIR
    bundle = Bundle.model_validate_json(response.content)
    assert bundle.type == "searchset" and bundle.total == 3
    ids = {entry.resource.id for entry in bundle.entry}
    assert ids == {str(s.pk) for s in [*mine, unassessable]}
    assert all(entry.search.mode == "match" and entry.fullUrl.endswith(f"/api/v1/studies/{entry.resource.id}/fhir/")
               for entry in bundle.entry)
    assert all(isinstance(entry.resource, DiagnosticReport) for entry in bundle.entry)

    page = Bundle.model_validate_json(api_a.get("/api/v1/studies/?format=fhir&page_size=2&order=triage").content)
    assert page.total == 3 and len(page.entry) == 2
    links = {link.relation: link.url for link in page.link}
    assert "format=fhir" in links["next"] and "page=2" in links["next"]
    assert page.entry[0].resource.id == str(mine[0].pk)  # triage order: the tumor first

    filtered = Bundle.model_validate_json(api_a.get("/api/v1/studies/?format=fhir&status=unassessable").content)
    assert [entry.resource.id for entry in filtered.entry] == [str(unassessable.pk)]
    by_accept = api_a.get("/api/v1/studies/", HTTP_ACCEPT=FHIR)
    assert Bundle.model_validate_json(by_accept.content).total == 3

    exported = AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_EXPORTED)
    assert exported.count() == 4 and exported.first().details["format"] == "fhir"
    plain = api_a.get("/api/v1/studies/")
    assert plain["Content-Type"] == "application/json" and plain.json()["count"] == 4


def test_the_bundle_needs_a_login(api_anonymous):
    response = api_anonymous.get("/api/v1/studies/?format=fhir")
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"


def test_the_schema_documents_the_exports(api_anonymous):
    schema = api_anonymous.get("/api/schema/?format=json").json()
    fhir = schema["paths"]["/api/v1/studies/{id}/fhir/"]["get"]
    assert FHIR in fhir["responses"]["200"]["content"] and "404" in fhir["responses"]
    sr = schema["paths"]["/api/v1/studies/{id}/dicom-sr/"]["get"]
    assert "application/dicom" in sr["responses"]["200"]["content"] and "409" in sr["responses"]
    listing = schema["paths"]["/api/v1/studies/"]["get"]
    assert FHIR in listing["responses"]["200"]["content"]
    assert any(p["name"] == "format" and "fhir" in p["schema"]["enum"] for p in listing["parameters"])
