"""Refuse an oversized request body before Django reads it.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not limit file uploads, so without this a client could
stream gigabytes to the temporary folder. Each file is also checked on its own (diagnosis.uploads).
"""

from django.conf import settings
from django.http import JsonResponse
from django.template.response import TemplateResponse


class RequestBodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_REQUEST_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            message = f"The upload is larger than the {limit // 1_048_576} MB a request may carry."
            if request.path.startswith("/api/"):
                return JsonResponse({"error": {"code": "payload_too_large", "message": message}}, status=413)
            return TemplateResponse(request, "413.html", {"message": message}, status=413)
        return self.get_response(request)


class NoStoreMiddleware:
    """`Cache-Control: private, no-store` on every answer to a logged-in user or an API caller (pages, CSV
    exports, JSON), so no browser cache or proxy keeps patient data. A view that sets its own header keeps it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        personal = (user is not None and user.is_authenticated) or "HTTP_AUTHORIZATION" in request.META \
            or request.path.startswith("/api/")
        if personal and "Cache-Control" not in response:
            response["Cache-Control"] = "private, no-store"
        return response
