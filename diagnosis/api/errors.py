"""One JSON shape for every API error: {"error": {"code": ..., "message": ..., "fields": {...}}}.

`fields` is there when particular fields were wrong (field name -> messages), `rejected` when uploaded
files could not be used. Django's own 404 and 500 pages under /api/ answer in the same shape
(diagnosis.errors), so do oversized bodies (diagnosis.middleware).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

NOT_FOUND = "There is nothing here, or you do not have access to it."
UNKNOWN_PATIENT = "No patient with this code is available to you."

# Every `code` an API error can carry: the schema lists these (ErrorDetailSerializer), and
# tests/api/test_api_schema.py checks that the code answers no other.
CODES = {
    "invalid": "Some fields, files or headers are not valid; see `fields`.",
    "parse_error": "The request body could not be parsed (JSON or form data).",
    "not_authenticated": "No credentials were sent.",
    "authentication_failed": "The token is not valid, has expired or was revoked.",
    "invalid_credentials": "Wrong username or password.",
    "not_token_authenticated": "The request was not made with a token, so there is no token to revoke.",
    "locked_out": "Too many failed logins: logging in is paused for a while (see `Retry-After`).",
    "permission_denied": "Not allowed (administrators only), or a missing CSRF token with session login.",
    "forbidden": "Not allowed (refused before the API's own checks).",
    "not_found": "No such object, or one the caller may not see.",
    "method_not_allowed": "The endpoint does not take this HTTP method.",
    "not_acceptable": "The endpoint cannot answer in the media type the `Accept` header asks for.",
    "unsupported_media_type": "The request's content type is not accepted.",
    "not_allowed": "The caller is not on the patient's care team.",
    "consent_required": "The patient has no active consent for AI analysis.",
    "invalid_state": "The study's state does not allow this.",
    "idempotency_key_reused": "The Idempotency-Key was already used for a submission for another patient.",
    "no_usable_file": "None of the uploaded files could be used; see `rejected`.",
    "too_large": "Every uploaded file was over the size limit; see `rejected`.",
    "unsupported_type": "Every uploaded file was of an unsupported type; see `rejected`.",
    "payload_too_large": "The request body is larger than the server accepts.",
    "throttled": "Too many requests; see `Retry-After`.",
    "server_error": "Something went wrong on the server's side.",
}


class ApiError(exceptions.APIException):
    """An error answered with this status, code and message, and optionally field messages or rejected files."""

    def __init__(self, status_code: int, code: str, message: str, *, fields: dict | None = None,
                 rejected: list[dict] | None = None):
        super().__init__(message, code)
        self.status_code = status_code
        self.fields = fields
        self.rejected = rejected


def exception_handler(exc, context):
    exc = _as_api_exception(exc)
    if exc is None:
        return None  # a bug: Django's 500 handler answers, in the same shape
    response = drf_exception_handler(exc, context)  # adds WWW-Authenticate or Retry-After, rolls back
    response.data = {"error": _body(exc)}
    return response


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, Http404):
        return exceptions.NotFound(NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return ApiError(413, "payload_too_large", "The request body is larger than the server accepts.")
    if isinstance(exc, (TooManyFilesSent, TooManyFieldsSent)):
        message = f"A study holds at most {settings.MAX_FILES_PER_STUDY} files."
        return ApiError(400, "invalid", message, fields={"images": [message]})
    if isinstance(exc, exceptions.APIException):
        return exc
    return None


def _body(exc: exceptions.APIException) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(exc.detail, dict):
            fields = {name: _messages(detail) for name, detail in exc.detail.items()}
            general = fields.pop("non_field_errors", [])
            message = " ".join(general) or "Some fields are not valid; see `fields`."
            return {"code": "invalid", "message": message, **({"fields": fields} if fields else {})}
        return {"code": "invalid", "message": " ".join(_messages(exc.detail))}
    body = {"code": exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code,
            "message": str(exc.detail)}
    if getattr(exc, "fields", None):
        body["fields"] = exc.fields
    if getattr(exc, "rejected", None) is not None:
        body["rejected"] = exc.rejected
    return body


def _messages(detail) -> list[str]:
    """Every message under a field, flattening nested serializers and list items."""
    if isinstance(detail, dict):
        return [message for value in detail.values() for message in _messages(value)]
    if isinstance(detail, list):
        return [message for item in detail for message in _messages(item)]
    return [str(detail)]


def service_error(error) -> ApiError:
    """The one mapping from a service's refusal (diagnosis.services.errors) to an API error.

    A conflict with the state of a study or a patient is 409; an upload of which nothing could be
    used is 413 when every file was too large, 415 when every file was of an unsupported type, else
    400; anything else the caller asked for is 400.
    """
    from diagnosis.services import ConsentRequired, InvalidState, NotAllowed, NothingUsable

    if isinstance(error, NothingUsable):
        rejected = [{"filename": r.filename, "code": r.code, "reason": r.reason} for r in error.rejections]
        codes = {r.code for r in error.rejections}
        reasons = [f"{r.filename}: {r.reason}" for r in error.rejections]
        details = {"fields": {"images": reasons}, "rejected": rejected}
        if codes == {"too_large"}:
            return ApiError(413, "too_large", str(error), **details)
        if codes == {"unsupported_type"}:
            return ApiError(415, "unsupported_type", str(error), **details)
        return ApiError(400, error.code, str(error), **details)
    if isinstance(error, ConsentRequired):
        return ApiError(409, error.code, str(error), fields={"patient": [str(error)]})
    if isinstance(error, InvalidState):
        return ApiError(409, error.code, str(error))
    if isinstance(error, NotAllowed):  # a patient the caller may not see is, to them, no patient at all
        return ApiError(400, "invalid", "Some fields are not valid; see `fields`.",
                        fields={"patient": [UNKNOWN_PATIENT]})
    return ApiError(400, error.code, str(error), fields={"images": [str(error)]})
