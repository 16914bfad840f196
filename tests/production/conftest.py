"""Helpers for the production tests: clean subprocess environments, settings computed from a given
environment, and a real S3-compatible server (moto's server mode) on a free local port."""

from __future__ import annotations

import os
import re
import runpy
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION_SECRET = "production-test-key-" + "k7Qm2xV9pL4sT8wZ1cR6bN3yH5jF0gD" * 2
PRODUCTION_AUDIT_KEYS = "k1:" + "audit-key-of-the-tests-" * 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(tmp_path: Path, **variables: str) -> dict:
    """An environment holding only what a fresh server would have, plus `variables`."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)),
            "DJANGO_SETTINGS_MODULE": "brainscan.settings", "BRAINSCAN_VAR_DIR": str(tmp_path / "var"),
            "PYTHONUNBUFFERED": "1", **variables}


def production_env(tmp_path: Path, **variables: str) -> dict:
    return clean_env(tmp_path, BRAINSCAN_PRODUCTION="1", DJANGO_SECRET_KEY=PRODUCTION_SECRET,
                     BRAINSCAN_AUDIT_KEYS=PRODUCTION_AUDIT_KEYS, DJANGO_ALLOWED_HOSTS="brainscan.example.org",
                     **variables)


def manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def settings_with(**variables: str) -> dict:
    """The settings module's names as computed with these variables added to the environment."""
    with mock.patch.dict(os.environ, variables):
        return runpy.run_path(str(ROOT / "brainscan" / "settings.py"), run_name="brainscan_settings_preview")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto's server) for the whole session; each test module takes its own bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # A host name, not an IP: as in the compose stack (http://minio:9000), where botocore signs for a name.
    yield f"http://localhost:{port}"
    server.stop()


def s3_variables(endpoint: str, bucket: str, **more: str) -> dict:
    return {"BRAINSCAN_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": bucket, "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "us-east-1", "AWS_ACCESS_KEY_ID": "brainscan-test",
            "AWS_SECRET_ACCESS_KEY": "brainscan-test-secret", **more}


@pytest.fixture(scope="module")
def s3_bucket(s3_endpoint):
    """A fresh private bucket, and a boto3 client to look inside it independently of the application."""
    import boto3

    name = f"brainscan-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="brainscan-test", aws_secret_access_key="brainscan-test-secret")
    client.create_bucket(Bucket=name)
    return name, client


def object_keys(client, bucket: str, prefix: str = "") -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


# --- docker-compose.yml ------------------------------------------------------------------------------

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.scale-out.yml")
# ${NAME}, ${NAME:-default}, ${NAME:?message}; not $${NAME}, which compose leaves to the container's shell.
COMPOSE_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)")


def load_compose(name: str = "docker-compose.yml") -> dict:
    import yaml

    return yaml.safe_load((ROOT / name).read_text())


def compose_variables() -> set[str]:
    """Every variable the compose files read from .env or the shell."""
    return {name for file in COMPOSE_FILES for name in COMPOSE_REFERENCE.findall((ROOT / file).read_text())}
