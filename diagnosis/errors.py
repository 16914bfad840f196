"""Error pages: JSON under /api/, the site's own plain pages elsewhere."""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render


def _page(request, status: int, title: str, message: str):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": title.lower().replace(" ", "_"), "message": message}}, status=status)
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def not_found(request, exception=None):
    return _page(request, 404, "Not found", "There is nothing here, or you do not have access to it.")


def forbidden(request, exception=None):
    return _page(request, 403, "Forbidden", "You are not allowed to do this.")


def server_error(request):
    return _page(request, 500, "Server error", "Something went wrong on our side. It has been logged; please try "
                 "again in a moment.")


def locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a login while locked out (AXES_LOCKOUT_CALLABLE)."""
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": {"code": "locked_out", "message": "Too many failed logins: logging in is "
                                           "paused for a while. Try again later, or ask an administrator."}},
                                status=429)
    else:
        response = render(request, "registration/locked_out.html", status=429)
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
