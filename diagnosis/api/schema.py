"""Schema helpers (the documented error responses) and the interactive docs page, made to work under the CSP."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularSwaggerSplitView

from diagnosis.api.serializers import ErrorSerializer

ERROR_MEANINGS = {
    400: "Invalid request: `fields` names each wrong field and why.",
    401: "No credentials (code `not_authenticated`), a token that is not valid, has expired or was revoked "
         "(`authentication_failed`), or a wrong username or password (`invalid_credentials`).",
    403: "Authenticated, but not allowed (administrators only), or a missing CSRF token with session login.",
    404: "No such object, or one the caller may not see.",
    409: "The object's state does not allow this (code `invalid_state`), or, on a submission or a retry, the "
         "patient has no active consent for AI analysis (code `consent_required`).",
    413: "Every uploaded file was over the size limit (code `too_large`), or the request body was too large "
         "(`payload_too_large`).",
    415: "Every uploaded file was of an unsupported type (code `unsupported_type`), or the request's "
         "content type is not accepted.",
    422: "The Idempotency-Key was already used for a submission for another patient (code "
         "`idempotency_key_reused`).",
    429: "Too many requests (code `throttled`, see `Retry-After`), or too many failed logins (code `locked_out`).",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error responses of an endpoint; 401 and 429 apply to every endpoint."""
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[status])
            for status in sorted({401, 429, *statuses})}


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI with its script loaded from a URL and no inline style, as the Content-Security-Policy requires."""

    template_name = "api/docs.html"
