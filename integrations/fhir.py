"""A study as a FHIR R4 DiagnosticReport, and a page of studies as a searchset Bundle.

The report contains (FHIR `contained`) one Observation per assessed image and one Device per model version
that assessed them. The patient is a logical reference by pseudonymous code; nothing else about the patient
is known here. Plain dictionaries are built (no FHIR library at run time); the tests validate them with the
fhir.resources R4B models.

    DiagnosticReport  status final (completed, unassessable), registered (queued), preliminary (processing),
                      cancelled (failed, cancelled); category RAD; code: the AI assessment (BrainScan's code
                      system); subject {identifier: urn:brainscan:patient-code}; effectiveDateTime (submitted),
                      issued; conclusion (+ conclusionCode when there is a result); result -> #image-N
      Observation     per image: valueQuantity (the tumor probability, UCUM "1") with interpretation POS/NEG
                      and components label and threshold; or, when the quality gate refused the image,
                      dataAbsentReason not-performed with the gate's message in a note; device -> #model-N
      Device          the model: version = model version, identifier = the sha256 of its weights
    A series (up to hundreds of slices) is summed up instead: one Observation #series (the most suspicious
    region's score, interpretation, and components: slices, slices assessed, suspicious slices, the region's
    first, last and peak slice and its window), then one Observation per suspicious slice and the peak.
"""

from __future__ import annotations

from datetime import UTC

from django.urls import reverse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from diagnosis.models import Prediction, Study
from integrations import selectors
from ml.predictor import TUMOR

MEDIA_TYPE = "application/fhir+json"
FORMAT = "fhir"
CODES = "urn:brainscan:codes"  # BrainScan's own code system
PATIENT_CODE = "urn:brainscan:patient-code"
STUDY_ID = "urn:brainscan:study"
IMAGE_ID = "urn:brainscan:image"
MODEL_SHA256 = "urn:brainscan:model-sha256"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
Status = Study.Status

REPORT_STATUS = {Status.QUEUED: "registered", Status.PROCESSING: "preliminary", Status.COMPLETED: "final",
                 Status.UNASSESSABLE: "final", Status.FAILED: "cancelled", Status.CANCELLED: "cancelled"}
RADIOLOGY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                         "display": "Radiology"}]}
IMAGING = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging",
                       "display": "Imaging"}]}
BRAIN = {"coding": [{"system": SNOMED, "code": "12738006", "display": "Brain structure"}]}
LABELS = {TUMOR: ("tumor", "Tumor suspected"), "no_tumor": ("no-tumor", "No tumor found")}


class FhirJsonRenderer(JSONRenderer):
    """FHIR JSON (`application/fhir+json`, `?format=fhir`). An error keeps the API's JSON error shape and type."""

    media_type = MEDIA_TYPE
    format = FORMAT

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and response.status_code >= 400:
            response["Content-Type"] = "application/json"
        return super().render(data, accepted_media_type, renderer_context)


def instant(moment) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def code(value: str, display: str) -> dict:
    return {"system": CODES, "code": value, "display": display}


def quantity(value: float) -> dict:
    return {"value": round(float(value), 6), "unit": "probability", "system": UCUM, "code": "1"}


def diagnostic_report(study: Study) -> dict:
    """The study as a DiagnosticReport (the study from diagnosis.selectors.study_with_results, or a page
    prefetched by selectors.with_results)."""
    images = selectors.assessed_images(study)
    subject = {"identifier": {"system": PATIENT_CODE, "value": study.patient.code}}
    devices: dict[tuple[str, str], dict] = {}
    observations = []
    for image, prediction in selectors.reported_images(study, images):
        if prediction is None:
            continue
        key = (prediction.model_version, prediction.model_sha256)
        if key not in devices:
            devices[key] = _device(f"model-{len(devices) + 1}", *key)
        observations.append(_observation(image, prediction, subject, devices[key]["id"], study))
    result = selectors.study_result(study, images)
    if result and result.get("series"):
        observations.insert(0, _series_observation(result, subject, next(iter(devices.values()))["id"], study))
    report = {
        "resourceType": "DiagnosticReport",
        "id": str(study.pk),
        "contained": [*devices.values(), *observations],
        "identifier": [{"system": STUDY_ID, "value": str(study.pk)}],
        "status": REPORT_STATUS[study.status],
        "category": [RADIOLOGY],
        "code": {"coding": [code("brain-tumor-ai-assessment", "AI assessment of brain MRI for tumor")],
                 "text": "AI assessment of brain MRI slices for tumor (decision support)"},
        "subject": subject,
        "effectiveDateTime": instant(study.created_at),
        "issued": instant(study.finished_at or study.updated_at),
        "result": [{"reference": f"#{observation['id']}"} for observation in observations],
        "conclusion": _conclusion(study, images),
    }
    if not report["contained"]:
        del report["contained"]
    if not report["result"]:
        del report["result"]
    if result:
        value, display = LABELS.get(result["label"], (result["label"], result["label"]))
        report["conclusionCode"] = [{"coding": [code(value, display)], "text": display}]
    return report


def _device(device_id: str, version: str, sha256: str) -> dict:
    return {
        "resourceType": "Device",
        "id": device_id,
        "identifier": [{"system": MODEL_SHA256, "value": sha256}],
        "manufacturer": "BrainScan",
        "deviceName": [{"name": "BrainScan brain tumor CNN", "type": "model-name"}],
        "type": {"text": "AI software for decision support (convolutional neural network)"},
        "version": [{"value": version}],
    }


def _observation(image, prediction: Prediction, subject: dict, device_id: str, study: Study) -> dict:
    observation = {
        "resourceType": "Observation",
        "id": f"image-{image.position + 1}",
        "identifier": [{"system": IMAGE_ID, "value": str(image.pk)}],
        "status": "final",
        "category": [IMAGING],
        "code": {"coding": [code("tumor-probability", "Probability of brain tumor (CNN)")],
                 "text": f"Tumor probability of image {image.position + 1}"},
        "subject": subject,
        "effectiveDateTime": instant(study.created_at),
        "issued": instant(prediction.created_at),
        "bodySite": BRAIN,
        "device": {"reference": f"#{device_id}"},
    }
    threshold = {"code": {"coding": [code("decision-threshold", "Decision threshold of the model")]},
                 "valueQuantity": quantity(prediction.threshold)}
    if prediction.usable:
        value, display = LABELS.get(prediction.label, (prediction.label, prediction.label))
        positive = prediction.label == TUMOR
        observation["valueQuantity"] = quantity(prediction.probability)
        observation["interpretation"] = _interpretation(positive, display)
        observation["component"] = [
            {"code": {"coding": [code("label", "Finding of the model")]},
             "valueCodeableConcept": {"coding": [code(value, display)], "text": display}},
            threshold,
        ]
    else:
        message = prediction.quality_message or "The image did not pass the quality check."
        observation["dataAbsentReason"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed",
                        "display": "Not Performed"}],
            "text": "Cannot be assessed: the image did not pass the quality check"}
        observation["note"] = [{"text": message}]
        observation["component"] = [
            {"code": {"coding": [code("quality-gate", "Image quality check")]},
             "valueCodeableConcept": {"coding": [code(prediction.quality_code or "rejected", "Cannot be assessed")],
                                      "text": message}},
        ]
    return observation


def _interpretation(positive: bool, text: str) -> list:
    return [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                         "code": "POS" if positive else "NEG", "display": "Positive" if positive else "Negative"}],
             "text": text}]


def _series_observation(result: dict, subject: dict, device_id: str, study: Study) -> dict:
    value, display = LABELS.get(result["label"], (result["label"], result["label"]))
    region = result["region"]

    def count(name: str, meaning: str, number) -> dict:
        return {"code": {"coding": [code(name, meaning)]}, "valueInteger": int(number)}

    return {
        "resourceType": "Observation",
        "id": "series",
        "identifier": [{"system": STUDY_ID, "value": f"{study.pk}/series"}],
        "status": "final",
        "category": [IMAGING],
        "code": {"coding": [code("series-tumor-probability", "Probability of brain tumor in a series (CNN)")],
                 "text": f"Mean tumor probability over the series' most suspicious {region['window']} slice(s)"},
        "subject": subject,
        "effectiveDateTime": instant(study.created_at),
        "issued": instant(study.finished_at or study.updated_at),
        "bodySite": BRAIN,
        "device": {"reference": f"#{device_id}"},
        "valueQuantity": quantity(result["probability"]),
        "interpretation": _interpretation(result["label"] == TUMOR, display),
        "component": [
            {"code": {"coding": [code("label", "Finding of the model")]},
             "valueCodeableConcept": {"coding": [code(value, display)], "text": display}},
            {"code": {"coding": [code("decision-threshold", "Decision threshold of the model")]},
             "valueQuantity": quantity(result["threshold"])},
            count("slices", "Slices in the series", result["slices"]),
            count("slices-assessed", "Slices assessed", result["assessed"]),
            count("suspicious-slices", "Slices at or above the threshold", result["suspicious_slices"]),
            count("region-first", "First slice of the most suspicious region (from 1)", region["first"] + 1),
            count("region-last", "Last slice of the most suspicious region (from 1)", region["last"] + 1),
            count("region-peak", "Most suspicious slice (from 1)", region["peak"] + 1),
            count("region-window", "Slices averaged in the region's score", region["window"]),
        ],
    }


def _conclusion(study: Study, images: list) -> str:
    result = selectors.study_result(study, images)
    if result and result.get("series"):
        region = result["region"]
        verdict = LABELS.get(result["label"], ("", result["label"]))[1]
        return (f"{verdict}: the series' most suspicious region, slices {region['first'] + 1} to {region['last'] + 1} "
                f"(peak at slice {region['peak'] + 1}), has a mean tumor probability of {result['probability']:.3f} "
                f"over {region['window']} slice(s) (threshold {result['threshold']:.3f}); "
                f"{result['suspicious_slices']} of {result['assessed']} assessed slice(s) at or above the threshold"
                + (f"; {result['slices'] - result['assessed']} slice(s) could not be assessed"
                   if result["slices"] > result["assessed"] else "")
                + f". Model {result['model_version']}. Decision support: to be read by a qualified clinician.")
    if result:
        assessed = sum(1 for _, p in images if p and p.usable)
        refused = sum(1 for _, p in images if p and not p.usable)
        verdict = LABELS.get(result["label"], ("", result["label"]))[1]
        return (f"{verdict}: highest tumor probability {result['probability']:.3f} (threshold "
                f"{result['threshold']:.3f}) among {assessed} assessed image(s)"
                + (f"; {refused} image(s) could not be assessed" if refused else "")
                + f". Model {result['model_version']}. Decision support: to be read by a qualified clinician.")
    if study.status in (Status.QUEUED, Status.PROCESSING):
        return "The assessment is not finished."
    return study.error or f"The study is {study.get_status_display().lower()}."


def search_bundle(request, studies: list[Study], paginator) -> dict:
    """A searchset Bundle of a page of studies (already filtered to final reports and paginated)."""
    selectors.with_results(studies)
    links = {"self": request.build_absolute_uri(), "next": paginator.get_next_link(),
             "previous": paginator.get_previous_link()}
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": instant(timezone.now()),
        "total": paginator.page.paginator.count,
        "link": [{"relation": relation, "url": url} for relation, url in links.items() if url],
        "entry": [{"fullUrl": request.build_absolute_uri(reverse("api:study-fhir", args=[study.pk])),
                   "resource": diagnostic_report(study), "search": {"mode": "match"}} for study in studies],
    }
