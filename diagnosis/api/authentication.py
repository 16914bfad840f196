"""`Authorization: Token <token>`, checked against the stored SHA-256 of live tokens (diagnosis.api.tokens)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from diagnosis.api import tokens

KEYWORD = "Token"


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None  # another scheme, or none: let the next authenticator try
        if len(parts) != 2:
            raise AuthenticationFailed(f"Send the token as `Authorization: {KEYWORD} <token>`.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The token is not valid.") from None
        token = tokens.find(secret)
        if token is None or not token.user.is_active:
            raise AuthenticationFailed("The token is not valid, has expired or was revoked; request a new one.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes a missing or bad credential answer 401 rather than 403.
        return KEYWORD


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A token from `POST /api/v1/auth/token/`, sent as `Authorization: Token <token>` "
                           "(the word Token, a space, then the token). It expires after the hours set by "
                           "BRAINSCAN_API_TOKEN_HOURS (12 by default) and is revoked by `DELETE /api/v1/auth/token/`.",
        }
