"""docker-compose.yml, read as data: the services and what each needs to run unattended, the worker
scales, and no secret is written in the file.

Docker cannot run on this machine (no engine, no compose plugin), so `docker compose config` and a
real `up` are not part of the suite; these checks are what can be verified without them.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from brainscan import env
from brainscan.celery import app as celery_app
from tests.production.conftest import ROOT, load_compose

pytestmark = pytest.mark.no_db

APPLICATION = ("web", "worker", "worker-default", "beat")
LONG_RUNNING = (*APPLICATION, "postgres", "redis", "minio", "nginx")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|_AUTH$|TOKEN")
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}$")
# A reference with no literal fallback: required (:?), or empty when unset (:-).
SECRET_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:\?[^}]*|:-)?\}$")
URL_PASSWORD = re.compile(r"://[^/\s@]*?:([^@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def strings(node):
    """Every string in the document, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def environment(service: dict) -> dict:
    variables = service.get("environment") or {}
    if isinstance(variables, list):
        variables = dict(item.split("=", 1) if "=" in item else (item, None) for item in variables)
    return variables


def test_the_stack_has_its_services(compose):
    assert set(compose["services"]) == {*LONG_RUNNING, "createbucket"}


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_health_check_and_restarts(compose, name):
    service = compose["services"][name]
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    assert service["restart"] == "unless-stopped"


def test_the_bucket_step_runs_once(compose):
    service = compose["services"]["createbucket"]
    assert service["restart"] == "no" and "healthcheck" not in service


def test_dependencies_wait_for_health_or_completion(compose):
    for name, service in compose["services"].items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in compose["services"][dependency], f"{name} waits on {dependency}"
            else:
                assert (condition, dependency) == ("service_completed_successfully", "createbucket")
    for name in ("worker", "worker-default", "beat"):  # the schema is migrated by web before they start
        assert compose["services"][name]["depends_on"]["web"]["condition"] == "service_healthy"


def test_data_lives_in_named_volumes(compose):
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/", "$")):
                assert source in declared, f"volume {source} is not declared"
                used.add(source)
    assert used == declared
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data"), ("minio", "/data")):
        assert any(mount.endswith(f":{target}") and not mount.startswith((".", "/"))
                   for mount in compose["services"][name]["volumes"]), f"{name}'s data is not in a named volume"


def test_the_workers_and_web_scale(compose):
    """`--scale worker=N` needs no fixed container name and no fixed host port."""
    for name in APPLICATION:
        service = compose["services"][name]
        assert "container_name" not in service and "ports" not in service
    assert not any("container_name" in service for service in compose["services"].values())


def test_inference_and_everything_else_have_their_own_workers(compose):
    routed = {route["queue"] for route in celery_app.conf.task_routes.values()} | {celery_app.conf.task_default_queue}
    consumed = {}
    for name in ("worker", "worker-default"):
        command = compose["services"][name]["command"]
        queues = command[command.index("--queues") + 1]
        node = command[command.index("--hostname") + 1].split("@")[0]
        consumed[name] = queues
        # The health check pings this container's own node, not any worker of the installation.
        assert f'--destination "{node}@$$(hostname)"' in compose["services"][name]["healthcheck"]["test"][1]
    assert consumed == {"worker": "inference", "worker-default": "default"}
    assert set(consumed.values()) == routed
    beats = [name for name, s in compose["services"].items() if "beat" in (s.get("command") or [])]
    assert beats == ["beat"]


def test_inference_processes_times_threads_is_the_core_count(compose):
    command = compose["services"]["worker"]["command"]
    assert command[command.index("--concurrency") + 1] == "${BRAINSCAN_INFERENCE_PROCESSES:-auto}"
    assert env.DEFAULTS["BRAINSCAN_INFERENCE_THREADS"] == "1"  # auto = one process per core, one thread each


def test_every_application_variable_reaches_the_containers_or_is_excluded_on_purpose(compose):
    passed = set(compose["x-app-environment"])
    excluded = set(compose["x-not-passed"])
    assert passed & excluded == set()
    assert set(env.DECLARED) - passed - excluded == set(), "add new variables to x-app-environment"
    for name in APPLICATION:
        assert passed <= set(environment(compose["services"][name])), name
    for name, value in compose["x-app-environment"].items():
        if name in env.DECLARED and not REQUIRED_REFERENCE.match(str(value)):
            assert str(value).startswith(("${" + name, "1", "s3", "postgres://", "redis://")), (name, value)


def test_no_secret_is_written_in_the_compose_files():
    for file in ("docker-compose.yml", "docker-compose.scale-out.yml"):
        document = load_compose(file)
        for service in document["services"].values():
            for name, value in environment(service).items():
                if SECRET_NAME.search(name):
                    assert SECRET_REFERENCE.match(str(value)), f"{file}: {name} must be a variable reference"
        for text in strings(document):
            for password in URL_PASSWORD.findall(text):
                assert REQUIRED_REFERENCE.match(password), f"{file}: a URL carries a password: {text}"
        for service in document["services"].values():
            command = service.get("command") or []
            if "--requirepass" in command:
                assert REQUIRED_REFERENCE.match(command[command.index("--requirepass") + 1])
        assert not re.search(r"(?i)(password|secret)\s*[:=]\s*['\"]?[A-Za-z0-9+/]{8,}", (ROOT / file).read_text())


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        if name in APPLICATION:
            assert image == "${BRAINSCAN_IMAGE:-brainscan:latest}" and service["build"] == "."
        else:
            assert ":" in image and not image.endswith(":latest"), image


def test_only_nginx_is_published(compose):
    assert [name for name, service in compose["services"].items() if "ports" in service] == ["nginx"]
    scale_out = load_compose("docker-compose.scale-out.yml")["services"]
    for name in ("postgres", "redis", "minio"):  # the multi-host override: on the private address only
        assert all(port.startswith("${BRAINSCAN_PRIVATE_IP:?") for port in scale_out[name]["ports"])


def test_the_nginx_template_fits_the_compose_stack(compose):
    template = (ROOT / "deploy/nginx/templates/default.conf.template").read_text()
    mounts = compose["services"]["nginx"]["volumes"]
    assert "./deploy/nginx/templates:/etc/nginx/templates:ro" in mounts
    assert "static:/srv/static:ro" in mounts and "alias /srv/static/;" in template
    assert "location /${AWS_STORAGE_BUCKET_NAME}/" in template
    assert "AWS_STORAGE_BUCKET_NAME" in compose["services"]["nginx"]["environment"]
    # The only variable envsubst sees in the template: nginx's own $host etc. must stay untouched.
    assert set(re.findall(r"\$\{(\w+)\}", template)) == {"AWS_STORAGE_BUCKET_NAME"}
    # The application trusts one X-Forwarded-For entry: nginx must set it, not append the client's.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in template
    assert "$proxy_add_x_forwarded_for" not in template


def test_the_bucket_script_creates_a_private_bucket_and_a_limited_account(compose, tmp_path):
    """Runs the one-shot script with a recording stand-in for MinIO's `mc` client: this checks the
    shell and the policy document it writes, not MinIO (which cannot run here)."""
    service = compose["services"]["createbucket"]
    script = service["command"][0].replace("$$", "$")  # what compose hands the container's shell
    calls = tmp_path / "calls"
    recorder = tmp_path / "bin" / "mc"
    recorder.parent.mkdir()
    recorder.write_text('#!/bin/sh\necho "$*" >> "$CALLS"\n'
                        'case "$*" in "admin policy create"*) cp "$6" "$CALLS.policy";; esac\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    shell_env = {"PATH": f"{recorder.parent}:{os.environ['PATH']}", "CALLS": str(calls), "BUCKET": "scans-x",
                 "APP_ACCESS_KEY": "app-key", "APP_SECRET_KEY": "app-secret"}
    subprocess.run([*service["entrypoint"], script], env=shell_env, check=True, timeout=30)

    assert calls.read_text().splitlines() == [
        "mb --ignore-existing local/scans-x",
        "anonymous set none local/scans-x",
        "admin policy create local brainscan-app /tmp/brainscan-policy.json",
        "admin user add local app-key app-secret",
        "admin policy detach local brainscan-app --user app-key",
        "admin policy attach local brainscan-app --user app-key",
    ]
    import json

    policy = json.loads(Path(f"{calls}.policy").read_text())
    resources = {resource for statement in policy["Statement"] for resource in statement["Resource"]}
    assert resources == {"arn:aws:s3:::scans-x", "arn:aws:s3:::scans-x/*"}
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation"}
