"""Who may reach every URL of the project: a rule per route, checked for every persona.

The project's URLConf is walked recursively; a route without a rule fails the test, so a new URL
cannot ship without someone deciding who may use it. To add rules (the API's, for instance), add
the route as Django prints it to RULES (or a whole namespace to PREFIX_RULES) and, for new path
parameters, a value to `path_values`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from diagnosis.models import AuditEvent, Reading, Study
from tests.conftest import logged_in
from tests.factories import PatientFactory, UserFactory
from tests.privacy.conftest import png_upload, submit_and_assess
from tests.privacy.samples import dicom_upload, identifiable_mr

pytestmark = pytest.mark.django_db

PERSONAS = ("clinician_a", "clinician_b", "admin", "anonymous")
LOGIN = "login"  # redirected to the site's login page
ADMIN_LOGIN = "admin login"  # redirected to the admin's login page
IN_ADMIN = "in admin"  # reached the admin itself: neither a login page nor a server error


@dataclass(frozen=True)
class Rule:
    expect: dict  # persona -> status code, LOGIN, ADMIN_LOGIN or IN_ADMIN
    method: str = "get"
    data: dict | None = None


def everyone(outcome) -> dict:
    return dict.fromkeys(PERSONAS, outcome)


SIGNED_IN = Rule({"clinician_a": 200, "clinician_b": 200, "admin": 200, "anonymous": LOGIN})
# The objects are clinician A's patient's: clinician B is not on the care team and gets 404, not 403.
CARE_TEAM = Rule({"clinician_a": 200, "clinician_b": 404, "admin": 200, "anonymous": LOGIN})
CARE_TEAM_ACTION = Rule({"clinician_a": 302, "clinician_b": 404, "admin": 302, "anonymous": LOGIN}, method="post")
READING = Rule(CARE_TEAM_ACTION.expect, method="post",
               data={"agrees_with_model": "yes", "finding": Reading.Finding.TUMOR, "comment": ""})
STAFF_ONLY = Rule({"clinician_a": ADMIN_LOGIN, "clinician_b": ADMIN_LOGIN, "admin": IN_ADMIN,
                   "anonymous": ADMIN_LOGIN})

RULES: dict[str, Rule] = {
    "login/": Rule({"clinician_a": 302, "clinician_b": 302, "admin": 302, "anonymous": 200}),
    "logout/": Rule(everyone(302), method="post"),
    "healthz": Rule(everyone("public")),  # 200 or 503 for anyone; it names no patient or study
    "livez": Rule(everyone(200)),
    "": SIGNED_IN,
    "studies/new/": SIGNED_IN,
    "studies/export.csv": SIGNED_IN,
    "studies/<uuid:study_id>/": CARE_TEAM,
    "studies/<uuid:study_id>/panel/": CARE_TEAM,
    "studies/<uuid:study_id>/status/": CARE_TEAM,
    "studies/<uuid:study_id>/retry/": CARE_TEAM_ACTION,
    "studies/<uuid:study_id>/reading/": READING,
    "studies/<uuid:study_id>/images/<uuid:image_id>/": CARE_TEAM,
    "studies/<uuid:study_id>/images/<uuid:image_id>/heatmap/": CARE_TEAM,
    "studies/<uuid:study_id>/images/<uuid:image_id>/dicom/": CARE_TEAM,
    "studies/<uuid:study_id>/dicom-sr/": CARE_TEAM,
    # The admin's own login page is public; a signed-in clinician sees it too (to sign in as staff).
    "admin/login/": Rule({"clinician_a": 200, "clinician_b": 200, "admin": 302, "anonymous": 200}),
    "admin/logout/": Rule(everyone(302), method="post"),
}
# The REST API answers 401 to anonymous callers (it never redirects) and 404 outside the care team.
API_SIGNED_IN = Rule({"clinician_a": 200, "clinician_b": 200, "admin": 200, "anonymous": 401})
API_CARE_TEAM = Rule({"clinician_a": 200, "clinician_b": 404, "admin": 200, "anonymous": 401})
UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
API_STUDY, API_IMAGE = f"api/v1/^studies/(?P<pk>{UUID})", f"(?P<image_id>{UUID})"
RULES.update({
    "api/v1/auth/token/": Rule(everyone(400), method="post"),  # no credentials sent: a field error for anyone
    "api/v1/": API_SIGNED_IN,
    "api/v1/^studies/$": API_SIGNED_IN,
    f"{API_STUDY}/$": API_CARE_TEAM,
    f"{API_STUDY}/images/{API_IMAGE}/$": API_CARE_TEAM,
    f"{API_STUDY}/images/{API_IMAGE}/heatmap/$": API_CARE_TEAM,
    f"{API_STUDY}/fhir/$": API_CARE_TEAM,
    f"{API_STUDY}/dicom-sr/$": API_CARE_TEAM,
    f"{API_STUDY}/slices/$": API_CARE_TEAM,
    # A completed study cannot be run again (409); B may not even learn that it exists.
    f"{API_STUDY}/retry/$": Rule({"clinician_a": 409, "clinician_b": 404, "admin": 409,
                                                    "anonymous": 401}, method="post"),
    f"{API_STUDY}/reading/$": Rule({"clinician_a": 200, "clinician_b": 404, "admin": 200,
                                                      "anonymous": 401}, method="post", data=READING.data),
    "api/v1/^patients/$": API_SIGNED_IN,
    "api/v1/^patients/(?P<code>[A-Za-z0-9][A-Za-z0-9_-]*)/$": API_CARE_TEAM,
    # Consent is recorded by administrators only: every clinician gets 403 for every code, which
    # tells nothing about whether a patient exists.
    "api/v1/^patients/(?P<code>[A-Za-z0-9][A-Za-z0-9_-]*)/consent/$": Rule(
        {"clinician_a": 403, "clinician_b": 403, "admin": 201, "anonymous": 401}, method="post",
        data={"scope": "ai_analysis"}),
    "api/v1/^models/$": API_SIGNED_IN,
    "api/schema/": Rule(everyone(200)),  # the contract is public; it names no patient or study
    "api/docs/": Rule(everyone(200)),
    "analytics/": SIGNED_IN,
    "analytics/model/": SIGNED_IN,
    "analytics/monitoring/": SIGNED_IN,
    "analytics/figures/<path:name>": Rule({"clinician_a": 404, "clinician_b": 404, "admin": 404,
                                           "anonymous": LOGIN}),  # no such figure, but only after the login
})
# Every admin view is wrapped by AdminSite.admin_view, which sends anyone but staff to its login.
PREFIX_RULES: dict[str, Rule] = {"admin/": STAFF_ONLY}


def rule_for(route: str) -> Rule | None:
    if route in RULES:
        return RULES[route]
    return next((rule for prefix, rule in PREFIX_RULES.items() if route.startswith(prefix)), None)


def all_routes(patterns=None, prefix: str = "") -> list[str]:
    """Every route of the URLConf, includes and namespaces resolved, as 'studies/<uuid:study_id>/'."""
    routes = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            routes += all_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            routes.append(prefix + str(pattern.pattern))
    return routes


def concrete_path(route: str, values: dict) -> str:
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda match: str(values[match.group(1)]), route)  # regex groups
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda match: str(values[match.group(1)]), path)  # <converter:name>
    return "/" + path.replace("^", "").replace("$", "")


def path_values(study: Study, admin_user) -> dict:
    return {
        "study_id": study.pk, "image_id": study.images.get(position=0).pk,
        # admin routes: any object id will do, the rule is about who gets past the admin's login
        "object_id": 1, "content_type_id": 1, "id": admin_user.pk, "app_label": "diagnosis", "url": "nowhere/",
        "pk": study.pk, "code": study.patient.code, "name": "no-such-figure.png",
    }


def outcome_matches(response, expected) -> bool:
    location = response.get("Location", "")
    if expected == LOGIN:
        return response.status_code == 302 and location.startswith(reverse("login"))
    if expected == ADMIN_LOGIN:
        return response.status_code == 302 and location.startswith(reverse("admin:login"))
    if expected == IN_ADMIN:
        return response.status_code < 500 and not location.startswith((reverse("admin:login"), reverse("login")))
    if expected == "public":
        return response.status_code in (200, 503)
    return response.status_code == expected


def test_every_url_has_a_rule():
    missing = [route for route in all_routes() if rule_for(route) is None]
    assert not missing, "URLs without an access rule in tests/privacy/test_access.py: " + ", ".join(missing)


def test_every_persona_gets_what_the_rule_says_on_every_url(media_root, clinician_a, clinician_b, admin_user,
                                                           patient_a):
    study = submit_and_assess(clinician_a, patient_a, [dicom_upload(identifiable_mr())])
    values = path_values(study, admin_user)
    users = {"clinician_a": clinician_a, "clinician_b": clinician_b, "admin": admin_user}
    failures = []
    for route in all_routes():
        rule = rule_for(route)
        path = concrete_path(route, values)
        if resolve(path).route != route.replace("^", ""):  # Django drops the anchor when it joins routes
            failures.append(f"{path} does not resolve to {route}")
            continue
        for persona in PERSONAS:
            client = logged_in(users[persona]) if persona in users else Client()
            response = getattr(client, rule.method)(path, rule.data or {})
            if not outcome_matches(response, rule.expect[persona]):
                failures.append(f"{persona} {rule.method.upper()} {path}: got {response.status_code} "
                                f"{response.get('Location', '')}, expected {rule.expect[persona]}")
    assert not failures, "\n".join(failures)


# --- IDOR: clinician B asks for clinician A's objects by id --------------------------------------------------


@pytest.fixture
def idor(media_root, clinician_a, clinician_b, patient_a, patient_b):
    study_a = submit_and_assess(clinician_a, patient_a, [png_upload(1)])
    study_b = submit_and_assess(clinician_b, patient_b, [png_upload(2)])
    return study_a, study_a.images.get(), study_b


def idor_requests(study: Study, image_id) -> list[tuple[str, str, dict]]:
    return [
        ("get", reverse("study-detail", args=[study.pk]), {}),
        ("get", reverse("study-panel", args=[study.pk]), {}),
        ("get", reverse("study-status", args=[study.pk]), {}),
        ("post", reverse("study-retry", args=[study.pk]), {}),
        ("post", reverse("study-reading", args=[study.pk]), READING.data),
        ("get", reverse("study-image", args=[study.pk, image_id]), {}),
        ("get", reverse("study-image", args=[study.pk, image_id]) + "?download=1", {}),
        ("get", reverse("study-heatmap", args=[study.pk, image_id]), {}),
        ("get", reverse("study-image-dicom", args=[study.pk, image_id]), {}),
    ]


def test_clinician_b_gets_404_for_each_of_clinician_a_objects(idor, client_b, clinician_b):
    study_a, image_a, _ = idor
    before = AuditEvent.objects.count()
    for method, path, data in idor_requests(study_a, image_a.pk):
        response = getattr(client_b, method)(path, data)
        assert response.status_code == 404, path
        assert study_a.patient.code.encode() not in response.content, path
    study_a.refresh_from_db()
    assert study_a.status == Study.Status.COMPLETED and not study_a.readings.exists()
    # nothing was viewed, retried or read: no audit event was written for B's attempts
    assert AuditEvent.objects.count() == before


def test_a_404_does_not_reveal_whether_the_object_exists(idor, client_b):
    study_a, image_a, _ = idor
    missing = Study(pk=uuid.uuid4())
    for (method, real, data), (_, made_up, _) in zip(idor_requests(study_a, image_a.pk),
                                                      idor_requests(missing, uuid.uuid4())):
        first, second = getattr(client_b, method)(real, data), getattr(client_b, method)(made_up, data)
        assert (first.status_code, without_csrf(first)) == (second.status_code, without_csrf(second)), real


def without_csrf(response) -> bytes:
    """The page without its CSRF token, which is masked differently on every response."""
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", response.content)


def test_an_image_of_a_is_not_reachable_through_b_own_study(idor, client_b):
    _, image_a, study_b = idor
    for route in ("study-image", "study-heatmap", "study-image-dicom"):
        assert client_b.get(reverse(route, args=[study_b.pk, image_a.pk])).status_code == 404


def test_export_and_worklist_leave_out_what_b_may_not_see(idor, client_b):
    study_a, _, study_b = idor
    csv = client_b.get(reverse("study-export"), {"id": [str(study_a.pk), str(study_b.pk)]}).getvalue().decode()
    assert str(study_b.pk) in csv and str(study_a.pk) not in csv and study_a.patient.code not in csv
    worklist = client_b.get(reverse("worklist"), {"scope": "all"}).content.decode()
    assert study_a.patient.code not in worklist


def test_b_cannot_submit_for_a_patient_by_id(idor, client_b, patient_a):
    response = client_b.post(reverse("study-new"), {"patient": patient_a.code, "images": [png_upload(3)]})
    assert response.status_code == 400
    assert "That patient is not on your list." in response.content.decode()
    assert Study.objects.filter(patient=patient_a).count() == 1


def test_a_care_team_of_several_clinicians_shares_the_patient(idor, clinician_a):
    study_a, image_a, _ = idor
    colleague = UserFactory(username="colleague")
    study_a.patient.care_team.add(colleague)
    client = logged_in(colleague)
    for method, path, data in idor_requests(study_a, image_a.pk):
        if method == "get" and "dicom" not in path:
            assert client.get(path).status_code == 200, path
    other = PatientFactory(care_team=[clinician_a])
    assert other.code not in client.get(reverse("study-new")).content.decode()
