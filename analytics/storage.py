"""Analytics files in Django's default storage, all under settings.ANALYTICS_DIR.

Names handled here are relative to that prefix. Only names of this shape are ever served, so the
figure view can never be turned into a way to read scans or heatmaps stored elsewhere.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

# Segments start with a letter or digit, so "." and ".." can never appear.
FIGURE_NAME = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/){1,4}[A-Za-z0-9][A-Za-z0-9._-]*\.png$")


def full_name(relative: str) -> str:
    return f"{settings.ANALYTICS_DIR}/{relative}"


def is_figure_name(relative: str) -> bool:
    return bool(FIGURE_NAME.match(relative))


def new_folder(kind: str) -> str:
    """A fresh folder per build, so a new build never changes the files an open page points at."""
    return f"{kind}/{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def save(relative: str, data: bytes) -> str:
    name = full_name(relative)
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(data))[len(settings.ANALYTICS_DIR) + 1:]


def read(relative: str) -> bytes:
    with default_storage.open(full_name(relative), "rb") as handle:
        return handle.read()


@contextmanager
def files() -> Iterator[Callable[[str, bytes], str]]:
    """Yield a `put(relative, data) -> relative` that removes everything it stored if the block fails."""
    stored: list[str] = []

    def put(relative: str, data: bytes) -> str:
        stored.append(save(relative, data))
        return stored[-1]

    try:
        yield put
    except BaseException:
        for relative in stored:
            default_storage.delete(full_name(relative))
        raise
