"""Every file the application keeps goes through Django's storage API, so local disk and S3 behave
the same: no code outside the settings touches MEDIA_ROOT or a stored file's filesystem path."""

from __future__ import annotations

import re

import pytest

from tests.production.conftest import ROOT

pytestmark = pytest.mark.no_db
# MEDIA_ROOT anywhere; FieldFile.path / storage.path (a local path that S3 has not got); the builtin
# open() on a stored file's name.
FORBIDDEN = re.compile(r"MEDIA_ROOT|\.(file|heatmap)\.path\b|storage\.path\("
                       r"|(?<![\w.])open\([^)]*\.(file|heatmap)\.name")


def application_sources() -> list:
    """The project's packages: brainscan and every Django app (any folder with apps.py), not tests."""
    packages = [ROOT / "brainscan", *(apps.parent for apps in ROOT.glob("*/apps.py"))]
    return sorted(path for package in packages for path in package.rglob("*.py")
                  if "migrations" not in path.parts and path != ROOT / "brainscan" / "settings.py")


def test_the_scan_covers_the_apps():
    names = {path.relative_to(ROOT).as_posix() for path in application_sources()}
    assert {"diagnosis/services/assessment.py", "diagnosis/files.py", "diagnosis/health.py",
            "brainscan/storage.py"} <= names


def test_no_file_access_bypasses_the_storage_api():
    offending = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in application_sources()
                 for number, line in enumerate(path.read_text().splitlines(), 1) if FORBIDDEN.search(line)]
    assert offending == []
