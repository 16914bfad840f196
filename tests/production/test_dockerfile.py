"""The Dockerfile, reviewed by reading (no Docker engine here): slim Python 3.11, pinned requirements
without the training packages, the model inside, static files collected, a non-root user."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from django.conf import settings

from tests.production.conftest import ROOT, clean_env

pytestmark = pytest.mark.no_db


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def requirement_pins(name: str) -> dict[str, tuple[str, bool]]:
    """package -> (version, marked for training) from a pip requirements file."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\[\]-]+)==([^\s#]+)", line)
        if match:
            package = re.sub(r"\[.*\]", "", match[1]).lower().replace("_", "-")
            pins[package] = (match[2], "# training" in line)
    return pins


def test_slim_python_311_base_without_floating_tags(instructions):
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11-slim(-\w+)?", base) for base in bases)


def test_runs_as_a_non_root_user(instructions):
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    assert any(op == "RUN" and "useradd --system" in args for op, args in runtime)


def test_installs_pinned_requirements_under_the_tested_constraints(instructions):
    install = next(args for op, args in instructions if op == "RUN" and "pip install" in args)
    assert "grep -v '# training' requirements.txt" in install and "-c constraints.txt" in install
    assert not any(op == "ADD" for op, _ in instructions)


def test_constraints_agree_with_every_pinned_requirement():
    """pip refuses to build an image whose requirements and constraints disagree."""
    constraints = requirement_pins("constraints.txt")
    for package, (version, _) in requirement_pins("requirements.txt").items():
        assert constraints.get(package, (None,))[0] == version, (
            f"{package}=={version}: regenerate constraints.txt (see its header)")


def test_the_image_holds_the_model_the_code_and_collected_static_files(instructions):
    copied = {args.split()[0] for op, args in instructions if op == "COPY" and "--from" not in args}
    local_apps = {app for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()}
    for needed in {"manage.py", "brainscan", "models", "templates", "static", "deploy", "ml"} | local_apps:
        assert needed in copied, f"the image lacks {needed}"
    for source in copied - {"requirements.txt", "constraints.txt"}:
        assert (ROOT / source).exists(), source
    assert any(op == "RUN" and "BRAINSCAN_PRODUCTION=1" in args and "collectstatic" in args
               for op, args in instructions)
    assert instructions[-1] == ("CMD", '["deploy/start-web"]')


def test_the_web_start_script_is_executable_shell():
    script = ROOT / "deploy" / "start-web"
    assert script.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    assert "migrate_locked" in text and "collectstatic" in text and "exec gunicorn" in text


def test_dockerignore_keeps_secrets_and_local_state_out():
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "**", "allow-list: everything is excluded unless named"
    assert not any(rule.lstrip("!").startswith((".env", "var", ".venv", "tests")) for rule in rules)
    assert "deploy/tls/" in rules


@pytest.mark.slow
def test_serving_imports_no_training_package(tmp_path):
    """The image leaves out the packages marked '# training'; the web and worker code must not need them. Nor
    does serving load matplotlib: only a worker that draws an analytics figure imports it."""
    training = sorted(package for package, (_, marked) in requirement_pins("requirements.txt").items() if marked)
    assert training, "requirements.txt marks no training package"
    probe = ("import sys, json, django; from importlib.metadata import packages_distributions; django.setup(); "
             "import brainscan.urls, brainscan.celery, diagnosis.tasks; "
             "from diagnosis.inference import get_predictor; get_predictor(); "
             "owners = packages_distributions(); "
             "print(json.dumps(sorted({d.lower().replace('_', '-') for name in list(sys.modules) "
             "for d in owners.get(name.split('.')[0], [])})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=clean_env(tmp_path), capture_output=True,
                         text=True, check=True).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "onnxruntime" in loaded  # the probe did load the serving path
    assert loaded & set(training) == set()
    assert "matplotlib" not in loaded


def test_collected_static_files_are_readable_by_nginx(tmp_path):
    """nginx serves /static/ from the volume as its own user; the scans' 0600 must not apply here."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    from tests.production.conftest import PRODUCTION_AUDIT_KEYS, PRODUCTION_SECRET, settings_with

    production = settings_with(BRAINSCAN_PRODUCTION="1", DJANGO_SECRET_KEY=PRODUCTION_SECRET,
                               BRAINSCAN_AUDIT_KEYS=PRODUCTION_AUDIT_KEYS,
                               DJANGO_ALLOWED_HOSTS="brainscan.example.org")["STORAGES"]["staticfiles"]
    assert production["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    storage = storages.create_storage({**production, "OPTIONS": {**production["OPTIONS"], "location": tmp_path}})
    storage.save("css/site.css", ContentFile(b"body {}"))
    assert (tmp_path / "css" / "site.css").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "css").stat().st_mode & 0o777 == 0o755
