"""Serve a stored scan or heatmap to someone already allowed to see it.

Files never have a public URL. Locally the application streams them (or hands the transfer to
nginx with X-Accel-Redirect); on S3 it redirects to a pre-signed link that expires in a minute.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect

from diagnosis import audit


def serve_audited(request, name: str, *, action: str, obj, patient_code: str, via: str = "web",
                  content_type: str = "image/png", download_name: str | None = None,
                  details: dict | None = None) -> HttpResponse:
    """Record who looked at which stored file, then hand it over: every scan, DICOM and heatmap, web and API."""
    audit.record(action, request=request, obj=obj, patient_code=patient_code, via=via, details=details or {})
    return private_file_response(name, download_name=download_name, content_type=content_type)


def private_file_response(name: str, *, download_name: str | None = None,
                          content_type: str = "image/png") -> HttpResponse:
    if not name:
        raise Http404("No such file")
    if settings.STORAGE_BACKEND == "s3":
        # The browser takes the file from S3 itself, so S3 must send these headers: they are signed into the link.
        headers = {"ResponseContentType": content_type, "ResponseCacheControl": "private, no-store"}
        if download_name:
            headers["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        response = HttpResponseRedirect(default_storage.url(name, parameters=headers))
    elif settings.X_ACCEL_REDIRECT_PREFIX:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = settings.X_ACCEL_REDIRECT_PREFIX.rstrip("/") + "/" + name
    else:
        try:
            handle = default_storage.open(name, "rb")
        except FileNotFoundError:
            raise Http404("The file is no longer stored") from None
        response = FileResponse(handle, content_type=content_type)
    if download_name:
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response["Cache-Control"] = "private, no-store"
    return response
