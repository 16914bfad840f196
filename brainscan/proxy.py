"""The client's address behind one trusted reverse proxy.

Behind nginx every request comes from nginx's address, so the audit trail and the login lockout
(keyed on username and address) would see one client. Our nginx sets X-Forwarded-For to the
address it saw (overwriting whatever the client sent); should another proxy append instead, only
the last entry is trusted, because the ones before it came from the client.
"""

from __future__ import annotations

import ipaddress


class ForwardedForMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            candidate = forwarded.rsplit(",", 1)[-1].strip()
            try:
                request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(candidate))
            except ValueError:
                pass  # not an address: keep the proxy's, which is at least true
        return self.get_response(request)
