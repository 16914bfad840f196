"""Real Celery worker processes for the tests, pointed at the test database and a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database the test process is using right now (the test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}"


def worker_env(**overrides: str) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "brainscan.settings_test",
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "BRAINSCAN_BROKER_PREFIX": settings.BROKER_KEY_PREFIX,
        "BRAINSCAN_VAR_DIR": str(settings.VAR_DIR),
        "BRAINSCAN_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "BRAINSCAN_MODEL_DIR": str(settings.MODEL_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


class Worker:
    """One `celery worker` (main process plus its pool), logging to a file."""

    def __init__(self, name: str, log_dir: Path, concurrency: int = 1, queues: str = "inference,default",
                 beat: bool = False, **env: str):
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        self.command = [sys.executable, "-m", "celery", "-A", "brainscan", "worker", "-Q", queues,
                        "--concurrency", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO",
                        "--without-gossip", "--without-mingle"]
        if beat:
            self.command += ["-B", "--schedule", str(log_dir / f"beat-{name}")]
        self.env = worker_env(**env)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Worker":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Worker {self.name} exited at start:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"Worker {self.name} not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pool_pids(self) -> list[int]:
        """The pids of the pool processes that run tasks (children of the main process)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL the whole worker, main process and pool, as a crash or an OOM kill would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def stop(self, timeout: float = 20) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if hasattr(self, "_log"):
            self._log.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"Timed out after {timeout}s waiting for {message}")
