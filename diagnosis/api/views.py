"""API endpoints. Thin, like the web views: reads go through selectors (so what a caller may not see is a
404), writes through services, and every call that shows or changes data writes an audit event (via "api").
"""

from __future__ import annotations

from django.contrib.auth import authenticate, user_logged_in, user_logged_out
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from diagnosis import audit, selectors, services
from diagnosis.api import serializers as s
from diagnosis.api import tokens
from diagnosis.api.errors import ApiError, service_error
from diagnosis.api.schema import errors
from diagnosis.errors import locked_out
from diagnosis.files import serve_audited
from diagnosis.models import ApiToken, AuditEvent, Consent
from integrations import fhir as fhir_export
from integrations import selectors as integration_selectors
from integrations import sr as sr_export

Action = AuditEvent.Action
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
IDEMPOTENCY_KEY = "Idempotency-Key"


class IsAdministrator(permissions.BasePermission):
    message = "Only administrators may do this."

    def has_permission(self, request, view):
        return selectors.is_admin(request.user)


class JsonErrorsNegotiation(DefaultContentNegotiation):
    """For the file endpoints: the file is sent as it is, and an error is JSON whatever the client accepts."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# --- Authentication --------------------------------------------------------------------------------------


@extend_schema(tags=["auth"])
class TokenView(APIView):
    """POST a username and password for a token that expires; DELETE with the token revokes it."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_permissions(self):
        return [permissions.AllowAny()] if self.request.method == "POST" else [permissions.IsAuthenticated()]

    @extend_schema(
        operation_id="auth_token_create", summary="Log in: get a token",
        description="Checks the username and password like the login page (failed attempts count towards the "
                    "lockout, which answers 429 `locked_out`) and returns a new token that expires after "
                    "BRAINSCAN_API_TOKEN_HOURS hours. Only its SHA-256 is stored.",
        request=s.CredentialsSerializer, auth=[],
        responses={201: OpenApiResponse(s.TokenSerializer, description="A new token."), **errors(400)},
    )
    def post(self, request):
        credentials = s.CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        # Django's authenticate(): django-axes counts failures and locks out, and the audit records them.
        user = authenticate(request._request, **credentials.validated_data)
        if user is None:
            if getattr(request._request, "axes_locked_out", False):
                return locked_out(request._request)  # what django-axes' middleware would answer anyway
            raise AuthenticationFailed("Wrong username or password.", code="invalid_credentials")
        _send_without_session(user_logged_in, request, user)
        secret, token = tokens.issue(user=user, request=request)
        return Response(s.TokenSerializer({"token": secret, "expires_at": token.expires_at}).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="auth_token_destroy", summary="Log out: revoke the token of this request",
                   request=None, responses={204: OpenApiResponse(description="Revoked."), **errors(400)})
    def delete(self, request):
        if not isinstance(request.auth, ApiToken):
            raise ApiError(400, "not_token_authenticated", "This request was not made with a token; "
                                                           "there is no token to revoke.")
        tokens.revoke(token=request.auth, request=request)
        _send_without_session(user_logged_out, request, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _send_without_session(signal, request, user) -> None:
    """Send the login or logout signal (audit, last_login, django-axes) without leaving a session behind:
    django-axes makes one to label its access log, a cookie that authenticates nothing here. A session the
    client already had is left alone."""
    session = request._request.session
    had_session = session.session_key is not None
    signal.send(sender=type(user), request=request._request, user=user)
    if not had_session:
        session.flush()


# --- Studies -----------------------------------------------------------------------------------------------


def _idempotency_key(request) -> str:
    key = request.headers.get(IDEMPOTENCY_KEY, "").strip()
    if len(key) > 128 or not key.isprintable() or not key.isascii():
        raise ApiError(400, "invalid", f"The {IDEMPOTENCY_KEY} header must be at most 128 printable ASCII "
                                       "characters.", fields={IDEMPOTENCY_KEY: ["Use at most 128 printable ASCII "
                                                                                "characters, e.g. a UUID."]})
    return key


STUDY_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The study's id.")
IMAGE_ID = OpenApiParameter("image_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The image's id.")
PNG = OpenApiResponse(OpenApiTypes.BINARY, description="The PNG file. With S3 storage, a 302 redirect to a "
                                                       "pre-signed link that expires within a minute.")
FHIR_FORMAT = OpenApiParameter("format", str, enum=["json", fhir_export.FORMAT], required=False,
                               description="`fhir`: a FHIR R4 searchset Bundle (`application/fhir+json`) of the "
                                           "DiagnosticReports of the listed studies whose report is final (completed "
                                           "or cannot be assessed), with the same filters and pagination.")


def json_errors(*statuses: int) -> dict:
    """The documented errors of an endpoint that also answers FHIR: errors stay `application/json`."""
    return {(status, "application/json"): response for status, response in errors(*statuses).items()}


@extend_schema(tags=["studies"])
@extend_schema_view(
    list=extend_schema(summary="List studies", parameters=[s.StudyFilterSerializer, FHIR_FORMAT],
                       description="The studies of the caller's patients (all studies for administrators), "
                                   "newest first unless `order=triage`. With `?format=fhir` (or `Accept: "
                                   "application/fhir+json`), a FHIR searchset Bundle of their final reports.",
                       responses={(200, "application/json"): OpenApiResponse(s.StudySummarySerializer(many=True),
                                                                             description="A page of studies."),
                                  (200, fhir_export.MEDIA_TYPE): OpenApiResponse(
                                      OpenApiTypes.OBJECT, description="A FHIR R4 Bundle (searchset) of "
                                                                       "DiagnosticReports."),
                                  **json_errors(400, 404)}),
)
class StudyViewSet(viewsets.GenericViewSet):
    """Studies of the caller's patients: submit slices, poll the status, read the result, see the images."""

    lookup_value_regex = UUID
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    # What each action reads or answers with (the browsable API's forms and OPTIONS use them too).
    serializer_classes = {"list": s.StudySummarySerializer, "retrieve": s.StudyDetailSerializer,
                          "create": s.StudySubmitSerializer, "reading": s.ReadingInputSerializer}

    def get_queryset(self):
        return selectors.studies_for(self.request.user)

    def get_serializer_class(self):
        return self.serializer_classes.get(self.action, serializers.Serializer)

    def get_renderers(self):
        renderers = super().get_renderers()
        return [*renderers, fhir_export.FhirJsonRenderer()] if self.action == "list" else renderers

    def list(self, request):
        form = s.StudyFilterSerializer(data=request.query_params)
        form.is_valid(raise_exception=True)
        query = form.validated_data
        studies = selectors.worklist(
            request.user, mine_only=query["mine"], patient_query=query.get("patient", ""),
            status=query.get("status", ""), order=query["order"], created_after=query.get("created_after"),
            created_before=query.get("created_before"))
        if request.accepted_renderer.format == fhir_export.FORMAT:
            page = self.paginate_queryset(integration_selectors.reported(studies))
            audit.record(Action.STUDY_EXPORTED, request=request, via="api",
                         details={"format": "fhir", "page": self.paginator.page.number, "shown": len(page)})
            return Response(fhir_export.search_bundle(request, page, self.paginator))
        page = self.paginate_queryset(studies)
        audit.record(Action.STUDY_LISTED, request=request, via="api",
                     details={"page": self.paginator.page.number, "shown": len(page)})
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Submit a study",
        description="Multipart upload of one (`image`) or several (`images`) JPEG, PNG or DICOM files for a "
                    "patient; each frame of a DICOM file is a slice. Answers 202 at once; the assessment runs in "
                    "the background: poll `url`. Files that cannot be used are listed in `rejected`, the others "
                    f"are kept. With an `{IDEMPOTENCY_KEY}` header, sending the same request again returns the "
                    "study the first one created and the files it rejected (with an `Idempotent-Replayed: true` "
                    "header) instead of a second study.",
        parameters=[OpenApiParameter(IDEMPOTENCY_KEY, str, OpenApiParameter.HEADER, required=False,
                                     description="A unique key per submission (a UUID, say), at most 128 "
                                                 "characters, so that a retried request creates one study.")],
        request={"multipart/form-data": s.StudySubmitSerializer},
        responses={202: OpenApiResponse(s.StudyAcceptedSerializer, description="Stored and queued (or, with a "
                                        "repeated Idempotency-Key, the study the first request created); the "
                                        "Location header holds `url`."), **errors(400, 409, 413, 415, 422)},
    )
    def create(self, request):
        key = _idempotency_key(request)
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        patient = form.validated_data["patient"]
        try:
            submission = services.submit_study(user=request.user, patient=patient,
                                               uploads=form.validated_data["files"], request=request, via="api",
                                               idempotency_key=key)
        except services.ServiceError as error:
            raise service_error(error) from error
        if not submission.created and submission.study.patient_id != patient.pk:
            raise ApiError(422, "idempotency_key_reused", f"This {IDEMPOTENCY_KEY} was already used for a study "
                                                          "of another patient; use a new key for each submission.")
        return self._accepted(submission, replayed=not submission.created)

    def _accepted(self, submission: services.Submission, replayed: bool = False) -> Response:
        body = s.StudyAcceptedSerializer(submission, context=self.get_serializer_context()).data
        headers = {"Location": body["url"], **({"Idempotent-Replayed": "true"} if replayed else {})}
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)

    @extend_schema(summary="A study: status and, when completed, the result", parameters=[STUDY_ID],
                   responses={200: OpenApiResponse(s.StudyDetailSerializer, description="The study."),
                              **errors(404)})
    def retrieve(self, request, pk=None):
        study = self.get_object()
        audit.record(Action.STUDY_VIEWED, request=request, obj=study, patient_code=study.patient.code, via="api")
        return Response(self.get_serializer(selectors.study_with_results(study)).data)

    @extend_schema(summary="Run a failed or cancelled study again", parameters=[STUDY_ID], request=None,
                   responses={202: OpenApiResponse(s.StudyAcceptedSerializer, description="Queued again."),
                              **errors(404, 409)})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        study = self.get_object()
        try:
            study = services.retry_study(user=request.user, study=study, request=request, via="api")
        except services.ServiceError as error:
            raise service_error(error) from error
        return self._accepted(services.Submission(study))

    @extend_schema(summary="Record the caller's own reading of a completed study", parameters=[STUDY_ID],
                   request=s.ReadingInputSerializer,
                   responses={200: OpenApiResponse(s.ReadingSerializer, description="The reading, created or updated."),
                              **errors(400, 404, 409)})
    @action(detail=True, methods=["post"])
    def reading(self, request, pk=None):
        study = self.get_object()
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            reading = services.record_reading(user=request.user, study=study, request=request, via="api",
                                              **form.validated_data)
        except services.ServiceError as error:
            raise service_error(error) from error
        return Response(s.ReadingSerializer(reading).data)

    @extend_schema(summary="Every slice's result, in slice order", parameters=[STUDY_ID],
                   description="A page of the study's slices (images), ordered by `position` along the series, "
                               "each with its latest result as it is stored: a series being assessed shows the "
                               "slices done so far.",
                   responses={200: OpenApiResponse(s.SliceSerializer(many=True), description="A page of slices."),
                              **errors(404)})
    @action(detail=True, methods=["get"])
    def slices(self, request, pk=None):
        study = self.get_object()
        page = self.paginate_queryset(selectors.slices_with_results(study))
        audit.record(Action.STUDY_VIEWED, request=request, obj=study, patient_code=study.patient.code, via="api",
                     details={"slices_page": self.paginator.page.number})
        return self.get_paginated_response(s.SliceSerializer(page, many=True, context=self.get_serializer_context())
                                           .data)

    @extend_schema(summary="An image of the study (PNG)", parameters=[STUDY_ID, IMAGE_ID],
                   responses={(200, "image/png"): PNG, **errors(404)})
    @action(detail=True, methods=["get"], url_path=rf"images/(?P<image_id>{UUID})", url_name="image",
            content_negotiation_class=JsonErrorsNegotiation)
    def image(self, request, pk=None, image_id=None):
        image = selectors.visible_image(request.user, pk, image_id)
        return serve_audited(request, image.file.name, action=Action.IMAGE_VIEWED, obj=image,
                             patient_code=image.study.patient.code, via="api")

    @extend_schema(summary="The heatmap of an image's latest prediction (PNG)", parameters=[STUDY_ID, IMAGE_ID],
                   responses={(200, "image/png"): PNG, **errors(404)})
    @action(detail=True, methods=["get"], url_path=rf"images/(?P<image_id>{UUID})/heatmap", url_name="heatmap",
            content_negotiation_class=JsonErrorsNegotiation)
    def heatmap(self, request, pk=None, image_id=None):
        image = selectors.visible_image(request.user, pk, image_id)
        prediction = selectors.latest_prediction(image)
        if prediction is None or not prediction.heatmap:
            raise ApiError(404, "not_found", "This image has no heatmap: it is not assessed yet, or could not be "
                                             "assessed.")
        return serve_audited(request, prediction.heatmap.name, action=Action.HEATMAP_VIEWED, obj=prediction,
                             patient_code=image.study.patient.code, via="api")

    @extend_schema(summary="The study as a FHIR R4 DiagnosticReport", parameters=[STUDY_ID],
                   description="A DiagnosticReport (`application/fhir+json`) with contained Observations, one per "
                               "assessed image (the tumor probability, or why the image could not be assessed), "
                               "and the model as a contained Device. The patient is referenced by pseudonymous "
                               "code (`urn:brainscan:patient-code`). Status `final` once completed or when the "
                               "study cannot be assessed, `registered`/`preliminary` before, `cancelled` when it "
                               "failed or was cancelled.",
                   responses={(200, fhir_export.MEDIA_TYPE): OpenApiResponse(
                       OpenApiTypes.OBJECT, description="The FHIR R4 DiagnosticReport."), **json_errors(404)})
    @action(detail=True, methods=["get"], url_path="fhir", url_name="fhir",
            renderer_classes=[fhir_export.FhirJsonRenderer], content_negotiation_class=JsonErrorsNegotiation)
    def fhir(self, request, pk=None):
        study = self.get_object()
        audit.record(Action.STUDY_EXPORTED, request=request, obj=study, patient_code=study.patient.code, via="api",
                     details={"format": "fhir"})
        return Response(fhir_export.diagnostic_report(selectors.study_with_results(study)))

    @extend_schema(summary="The study's AI result as a DICOM SR (Comprehensive 3D SR, TID 1500)",
                   parameters=[STUDY_ID],
                   description="For a study with DICOM images whose assessment is complete (or that cannot be "
                               "assessed): a DICOM Structured Report (`application/dicom`, a download) that "
                               "references the de-identified source instances by their UIDs and holds each "
                               "image's finding and probability and the algorithm's name and version. 404 for a "
                               "study without DICOM images, 409 `invalid_state` before the assessment is complete.",
                   responses={(200, sr_export.MEDIA_TYPE): OpenApiResponse(OpenApiTypes.BINARY,
                                                                           description="The DICOM SR file."),
                              **errors(404, 409)})
    @action(detail=True, methods=["get"], url_path="dicom-sr", url_name="dicom-sr",
            content_negotiation_class=JsonErrorsNegotiation)
    def dicom_sr(self, request, pk=None):
        study = self.get_object()
        try:
            return sr_export.dicom_sr_response(request, study, via="api")
        except sr_export.NoDicomImages as error:
            raise ApiError(404, "not_found", str(error)) from error
        except sr_export.NotReady as error:
            raise ApiError(409, "invalid_state", str(error)) from error


# --- Patients ----------------------------------------------------------------------------------------------


PATIENT_CODE = OpenApiParameter("code", str, OpenApiParameter.PATH, description="The patient's pseudonymous code.")


@extend_schema(tags=["patients"])
@extend_schema_view(
    list=extend_schema(summary="List patients",
                       description="The patients on the caller's care teams (all patients for administrators), "
                                   "with their consent.",
                       responses={200: OpenApiResponse(s.PatientSerializer(many=True),
                                                       description="A page of patients."), **errors(404)}),
    retrieve=extend_schema(summary="A patient", parameters=[PATIENT_CODE],
                           responses={200: OpenApiResponse(s.PatientSerializer, description="The patient."),
                                      **errors(404)}),
)
class PatientViewSet(viewsets.GenericViewSet):
    """The caller's patients and their consent; administrators see all, create patients and record consent."""

    lookup_field = "code"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9_-]*"
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    serializer_classes = {"create": s.PatientCreateSerializer, "consent": s.ConsentCreateSerializer}

    def get_serializer_class(self):
        return self.serializer_classes.get(self.action, s.PatientSerializer)

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [permissions.IsAuthenticated()]
        return [permissions.IsAuthenticated(), IsAdministrator()]

    def get_queryset(self):
        return selectors.patients_for(self.request.user).prefetch_related("care_team", "consents")

    def _answer(self, patient, status_code=status.HTTP_200_OK, headers=None) -> Response:
        return Response(s.PatientSerializer(patient, context=self.get_serializer_context()).data, status=status_code,
                        headers=headers)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        audit.record(Action.PATIENT_VIEWED, request=request, via="api",
                     details={"page": self.paginator.page.number, "shown": len(page)})
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, code=None):
        patient = self.get_object()
        audit.record(Action.PATIENT_VIEWED, request=request, obj=patient, patient_code=patient.code, via="api")
        return self._answer(patient)

    @extend_schema(summary="Create a patient (administrators)", request=s.PatientCreateSerializer,
                   responses={201: OpenApiResponse(s.PatientSerializer, description="Created; the Location header "
                                                                                    "holds its `url`."),
                              **errors(400, 403)})
    def create(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        patient = services.create_patient(actor=request.user, code=form.validated_data.get("code", ""),
                                          care_team=form.validated_data.get("care_team", []), request=request,
                                          via="api")
        patient = self.get_queryset().get(pk=patient.pk)
        url = s.absolute_url(request, "patient-detail", patient.code)
        return self._answer(patient, status.HTTP_201_CREATED, headers={"Location": url})

    @extend_schema(methods=["POST"], summary="Record a patient's consent (administrators)",
                   parameters=[PATIENT_CODE], request=s.ConsentCreateSerializer,
                   responses={201: OpenApiResponse(s.ConsentSerializer, description="Recorded."),
                              **errors(400, 403, 404)})
    @extend_schema(methods=["DELETE"], summary="Withdraw a patient's consent (administrators)",
                   description="Withdraws the active consents of the scope (AI analysis unless `?scope=` says "
                               "otherwise); the patient's studies that have not started are cancelled.",
                   parameters=[PATIENT_CODE, OpenApiParameter("scope", str, enum=Consent.Scope.values,
                                                              description="Default ai_analysis.")],
                   request=None, responses={200: OpenApiResponse(s.ConsentWithdrawnSerializer,
                                                                 description="What was withdrawn and cancelled."),
                                            **errors(400, 403, 404)})
    @action(detail=True, methods=["post", "delete"])
    def consent(self, request, code=None):
        patient = self.get_object()
        if request.method == "POST":
            form = self.get_serializer(data=request.data)
            form.is_valid(raise_exception=True)
            consent = services.grant_consent(patient=patient, actor=request.user, request=request, via="api",
                                             **form.validated_data)
            return Response(s.ConsentSerializer(consent).data, status=status.HTTP_201_CREATED)
        form = self.get_serializer(data=request.query_params)
        form.is_valid(raise_exception=True)
        withdrawn = cancelled = 0
        for consent in Consent.objects.active(form.validated_data["scope"]).filter(patient=patient):
            cancelled += services.withdraw_consent(consent=consent, actor=request.user, request=request, via="api")
            withdrawn += 1
        return Response(s.ConsentWithdrawnSerializer({"withdrawn": withdrawn, "studies_cancelled": cancelled}).data)


# --- Models ------------------------------------------------------------------------------------------------


@extend_schema(tags=["models"])
class ModelVersionViewSet(viewsets.ViewSet):
    """The model versions in the registry (folders, not rows), with their model cards."""

    @extend_schema(summary="List the model versions", description="Every registered version with its model card, "
                   "and which one is active and served.",
                   responses={200: OpenApiResponse(s.ModelVersionSerializer(many=True),
                                                   description="Every registered version."), **errors()})
    def list(self, request):
        models = selectors.registered_models()
        audit.record(Action.MODEL_LISTED, request=request, via="api", details={"versions": len(models)})
        return Response(s.ModelVersionSerializer(models, many=True).data)
