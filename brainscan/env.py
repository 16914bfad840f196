"""Strict parsing of environment variables: a bad value stops the process with its name.

Every variable the application reads is declared through these helpers, so the README's table
and `.env.example` can be checked against `DECLARED` (name -> help) and `DEFAULTS` (name -> the
default as it would be written in a .env file, "" when there is none). Declare every variable on
every path through the settings, so the declarations do not depend on the environment.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

DECLARED: dict[str, str] = {}
DEFAULTS: dict[str, str] = {}
_RATE = re.compile(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _as_text(default) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, (list, tuple)):
        return ",".join(default)
    return str(default)


def _raw(name: str, help_text: str, default=None) -> str | None:
    DECLARED[name] = help_text
    DEFAULTS[name] = _as_text(default)
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def string(name: str, default: str | None = None, help: str = "") -> str | None:
    value = _raw(name, help, default)
    return default if value is None else value


def required(name: str, help: str = "") -> str:
    value = _raw(name, help)
    if value is None:
        raise ImproperlyConfigured(f"The environment variable {name} is required ({help}).")
    return value


def boolean(name: str, default: bool, help: str = "") -> bool:
    value = _raw(name, help, default)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off.")


def integer(name: str, default: int, help: str = "", minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name, help, default)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and maximum is not None and not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"{name}={number} is outside [{minimum}, {maximum}].")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below its minimum, {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above its maximum, {maximum}.")
    return number


def key_list(name: str, help: str, *, required: bool, development_default: dict[str, str]) -> dict[str, str]:
    """`id:secret,id:secret` -> {id: secret}, in order (the first is the current key)."""
    value = _raw(name, help, None)
    if not value:
        if required:
            raise ImproperlyConfigured(f"{name} is required in production: {help}")
        return development_default
    keys = {}
    for part in value.split(","):
        key_id, _, secret = part.strip().partition(":")
        if not key_id or not secret or not key_id.isalnum() or len(key_id) > 16:
            raise ImproperlyConfigured(f"{name}: each entry must be id:secret with a short alphanumeric id.")
        if len(secret) < 32:
            raise ImproperlyConfigured(f"{name}: the secret of key {key_id!r} must be at least 32 characters.")
        keys[key_id] = secret
    return keys


def string_list(name: str, default: list[str], help: str = "") -> list[str]:
    value = _raw(name, help, default)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def choice(name: str, default: str, choices: tuple[str, ...], help: str = "") -> str:
    value = string(name, default, help)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(choices)}.")
    return value


def url(name: str, default: str | None, schemes: tuple[str, ...], help: str = "") -> str | None:
    value = string(name, default, help)
    if value is None:
        return None
    scheme = urlparse(value).scheme
    if scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must be a URL with one of the schemes {', '.join(schemes)}; "
                                   f"got {scheme!r}.")
    return value


def rate(name: str, default: str, help: str = "") -> str:
    """A request rate such as 30/minute (per second, minute, hour or day)."""
    value = string(name, default, help)
    if not _RATE.fullmatch(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate; write it as a count per second, minute, hour "
                                   "or day, e.g. 30/minute.")
    return value
