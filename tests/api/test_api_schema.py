"""The OpenAPI schema against the live application (schemathesis), what it documents, and the docs page in
Chromium."""

import ast
import importlib
import inspect
import json
import pkgutil

import pytest
import requests
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from rest_framework import exceptions

import diagnosis.api
from diagnosis import errors as pages
from diagnosis import middleware, services
from diagnosis.api import tokens
from tests.api.helpers import assess
from tests.factories import PatientFactory, StudyFactory

pytestmark = pytest.mark.django_db(transaction=True)


# The schema the application serves at /api/schema/ (test_the_live_schema_is_this_one checks that it is);
# generated here because schemathesis' loader from a fixture does not run under pytest 9.
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(SCHEMA)


@pytest.fixture
def unthrottled(settings):
    """Many requests in a few seconds from one user: the rates are not what is tested here."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"}}


def test_the_live_schema_is_this_one(live_server):
    served = requests.get(f"{live_server.url}/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(SCHEMA))


def test_the_submission_docs_name_every_accepted_format_and_the_409_for_a_missing_consent():
    create = SCHEMA["paths"]["/api/v1/studies/"]["post"]
    assert "JPEG, PNG or DICOM" in create["description"]
    fields = SCHEMA["components"]["schemas"]["StudySubmitRequest"]["properties"]
    assert "DICOM" in fields["image"]["description"] and "DICOM" in fields["images"]["description"]
    assert "consent_required" in create["responses"]["409"]["description"]


def codes_written_in(module) -> set[str]:
    """The error codes a module writes literally: ApiError(status, "code", ...), code="..." and {"code": "..."}."""
    nodes = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ApiError" and len(node.args) > 1:
            nodes.append(node.args[1])
        elif isinstance(node, ast.keyword) and node.arg == "code":
            nodes.append(node.value)
        elif isinstance(node, ast.Dict):
            nodes += [value for key, value in zip(node.keys, node.values)
                      if isinstance(key, ast.Constant) and key.value == "code"]
    return {node.value for node in nodes if isinstance(node, ast.Constant)}


def test_the_schema_lists_every_error_code_the_api_answers_and_no_other(rf):
    api_modules = [importlib.import_module(module.name)
                   for module in pkgutil.iter_modules(diagnosis.api.__path__, "diagnosis.api.")]
    written = set().union(*(codes_written_in(module) for module in [*api_modules, pages, middleware]))
    # What DRF raises (a ValidationError answers `invalid`), what the services raise (views pass error.code
    # on) and Django's own error pages under /api/.
    drf = {cls.default_code for cls in vars(exceptions).values() if isinstance(cls, type)
           and issubclass(cls, exceptions.APIException) and cls not in (exceptions.APIException,
                                                                      exceptions.ValidationError)}
    service = {cls.code for cls in (services.ServiceError, *services.ServiceError.__subclasses__())}
    django = {json.loads(page(rf.get("/api/v1/nothing/")).content)["error"]["code"]
              for page in (pages.not_found, pages.forbidden, pages.server_error)}
    listed = SCHEMA["components"]["schemas"]["ErrorDetailCodeEnum"]["enum"]
    assert written | drf | service | django == set(listed)


@pytest.fixture
def admin_token(admin_user, clinician_a):
    """An administrator's token (every endpoint is open to them), with a patient and a completed study to find."""
    patient = PatientFactory(code="P-FUZZ0001", care_team=[clinician_a])
    assess(StudyFactory(patient=patient, submitted_by=clinician_a, images=1))
    secret, _ = tokens.issue(user=admin_user, request=None)
    return secret


@schema.parametrize()
@hypothesis_settings(max_examples=15, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_no_input_makes_a_server_error_and_answers_match_the_schema(case, live_server, unthrottled, admin_token):
    case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Token {admin_token}"},
                           checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


@pytest.mark.browser
def test_the_docs_page_renders_under_the_content_security_policy(live_server, chromium_path):
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            # A blocked script or style shows up as a console error ("Refused to ...").
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            response = page.goto(f"{live_server.url}/api/docs/")
            assert "script-src 'self'" in response.headers["content-security-policy"]
            page.wait_for_selector(".opblock-summary", timeout=30_000)
            paths = set(page.locator(".opblock-summary-path").all_inner_texts())
            assert {"/api/v1/studies/", "/api/v1/auth/token/", "/api/v1/models/"} <= {p.strip() for p in paths}
            assert page.locator(".btn.authorize").count() == 1  # the token can be entered
        finally:
            browser.close()
    assert problems == []
