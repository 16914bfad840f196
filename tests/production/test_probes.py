"""The container health probes against real processes: gunicorn with the production settings and the
compose file's gunicorn configuration, and celery beat writing its schedule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from brainscan import probe
from tests.conftest import need
from tests.production.conftest import ROOT, free_port, production_env
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def run_probe(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainscan.probe", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def started(command: list[str], env: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        process.wait(20)


@pytest.fixture
def gunicorn(tmp_path):
    port = free_port()
    env = production_env(tmp_path, BRAINSCAN_BEHIND_PROXY="1", WEB_CONCURRENCY="1")
    process = started([sys.executable, "-m", "gunicorn", "brainscan.wsgi", "--config", "deploy/gunicorn.conf.py",
                       "--bind", f"127.0.0.1:{port}"], env, tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: process.poll() is not None or run_probe(env, "web", str(port)).returncode == 0, timeout=60,
                 message="gunicorn to answer")
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield port, env
    finally:
        stop(process)


def status_of(url: str, **headers: str) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        response = urllib.request.build_opener(NoRedirect).open(urllib.request.Request(url, headers=headers),
                                                                  timeout=10)
        return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


@pytest.mark.no_db
def test_the_web_probe_passes_on_a_production_server_over_plain_http(gunicorn):
    port, env = gunicorn
    result = run_probe(env, "web", str(port))
    assert result.returncode == 0 and result.stdout.strip() == "web: ok"
    base = f"http://127.0.0.1:{port}"
    host = {"Host": "brainscan.example.org"}
    # /livez is exempt from the https redirect, every other page is not; unknown hosts are refused.
    assert status_of(f"{base}/livez", **host) == (200, "")
    assert status_of(f"{base}/healthz", **host) == (301, "https://brainscan.example.org/healthz")
    assert status_of(f"{base}/livez", Host="attacker.example")[0] == 400
    # Through the proxy (X-Forwarded-Proto: https) the request counts as secure: answered, not redirected
    # (503: this throwaway server has no migrated database, no broker and no worker).
    assert status_of(f"{base}/healthz", **host, **{"X-Forwarded-Proto": "https"}) == (503, "")


@pytest.mark.no_db
def test_the_web_probe_fails_when_nothing_answers(tmp_path):
    result = run_probe(production_env(tmp_path), "web", str(free_port()))
    assert result.returncode == 1 and "does not answer" in result.stderr


@pytest.mark.no_db
def test_the_beat_probe_follows_the_schedule_file(tmp_path, redis_available):
    need(redis_available, "Redis is not running on 127.0.0.1:6379")
    from django.conf import settings

    schedule = tmp_path / "celerybeat-schedule"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "brainscan.settings_test", "BRAINSCAN_SWEEP_SECONDS": "2",
           "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "BRAINSCAN_BROKER_PREFIX": settings.BROKER_KEY_PREFIX}
    assert run_probe(env, "beat", str(schedule)).returncode == 1  # nothing written yet
    beat = started([sys.executable, "-m", "celery", "-A", "brainscan", "beat", "--schedule", str(schedule),
                    "--loglevel", "INFO"], env, tmp_path / "beat.log")
    try:
        wait_for(lambda: run_probe(env, "beat", str(schedule)).returncode == 0, timeout=60,
                 message=f"beat to write its schedule:\n{(tmp_path / 'beat.log').read_text()}")
        first = max(path.stat().st_mtime for path in tmp_path.glob("celerybeat-schedule*"))
        # Written again after each task sent (beat_sync_every=1), not only every three minutes.
        wait_for(lambda: max(p.stat().st_mtime for p in tmp_path.glob("celerybeat-schedule*")) > first, timeout=20,
                 message="beat to rewrite its schedule")
    finally:
        stop(beat)
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(settings.BROKER_KEY_PREFIX + "default")
    stale = time.time() - (3 * 2 + 31)
    for path in tmp_path.glob("celerybeat-schedule*"):
        os.utime(path, (stale, stale))
    result = run_probe(env, "beat", str(schedule))
    assert result.returncode == 1 and "last wrote its schedule" in result.stderr


@pytest.mark.no_db
def test_the_probe_explains_its_use(tmp_path):
    result = run_probe(production_env(tmp_path))
    assert result.returncode == 2 and "python -m brainscan.probe web" in result.stderr
    assert probe.main(["nonsense"]) == 2


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_health_check_reaches_this_worker_only(redis_available, tmp_path):
    """The compose file's check, run as Docker runs it (sh -c), against a real worker named like the
    compose one (inference@<hostname>), then for a node that is not running."""
    need(redis_available, "Redis is not running on 127.0.0.1:6379")
    from tests.production.conftest import load_compose
    from tests.workers import Worker

    check = load_compose()["services"]["worker"]["healthcheck"]["test"][1].replace("$$", "$")
    worker = Worker("inference", tmp_path, queues="inference").start()
    env = {**worker.env, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    try:
        assert subprocess.run(["sh", "-c", check], cwd=ROOT, env=env, timeout=60).returncode == 0
        absent = check.replace("inference@", "nobody@").replace("--timeout 10", "--timeout 2")
        assert subprocess.run(["sh", "-c", absent], cwd=ROOT, env=env, capture_output=True,
                              timeout=60).returncode != 0
    finally:
        worker.stop()
