"""Real processes for tests and benchmarks: a private Redis, Celery workers and beat, gunicorn.

Each runs in its own session and logs to its own file, so a test can kill one (and its children) as a
crash or an OOM kill would, and read what it printed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    """Poll `predicate` until it returns something true, and return that; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"Timed out after {timeout}s waiting for {message}")


class Service:
    """A child process in a session of its own (so a signal reaches its children too), logging to a file."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict | None = None):
        self.name, self.command, self.log_path = name, command, log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen | None = None
        self._log_file = None

    def ready(self) -> bool:
        return True

    def start(self, timeout: float = 60) -> "Service":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=self._log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()[-4000:]}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def children(self) -> list[int]:
        """The pids of the main process's children (a Celery worker's pool processes)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL the process and its children at once, as a crash or an OOM kill would."""
        if self.running:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def stop(self, timeout: float = 20) -> None:
        if self.running:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class RedisServer(Service):
    """A private, memory-only redis-server on a free port; `stop()` and `start()` again keep the port."""

    def __init__(self, folder: Path, port: int | None = None):
        self.port = port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(f"redis-{self.port}", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                                "--save", "", "--appendonly", "no", "--daemonize", "no",
                                                "--dir", str(folder)],
                         folder / f"redis-{self.port}.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 20) -> None:
        super().stop(timeout)
        wait_for(lambda: not port_open(self.port), 10, message=f"port {self.port} to close")


class CeleryWorker(Service):
    """`celery worker` on both queues: a main process and `concurrency` pool processes."""

    def __init__(self, name: str, log_dir: Path, env: dict, concurrency: int = 1,
                 queues: str = "inference,default", beat: bool = False):
        command = [sys.executable, "-m", "celery", "-A", "brainscan", "worker", "-Q", queues,
                   "--concurrency", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO",
                   "--without-gossip", "--without-mingle"]
        if beat:
            command += ["-B", "--schedule", str(log_dir / f"beat-{name}")]
        super().__init__(f"worker {name}", command, log_dir / f"worker-{name}.log", env)

    def ready(self) -> bool:
        return " ready." in self.log()

    def pool_pids(self) -> list[int]:
        return self.children()


class CeleryBeat(Service):
    """The scheduler that sends the sweeper's task every BRAINSCAN_SWEEP_SECONDS."""

    def __init__(self, log_dir: Path, env: dict):
        super().__init__("beat", [sys.executable, "-m", "celery", "-A", "brainscan", "beat", "--loglevel", "INFO",
                                  "--schedule", str(log_dir / f"beat-{uuid.uuid4().hex[:8]}")],
                         log_dir / "beat.log", env)

    def ready(self) -> bool:
        return "beat: Starting" in self.log()


class WebServer(Service):
    """gunicorn serving the site, like `make run`."""

    def __init__(self, log_dir: Path, env: dict, workers: int = 2, threads: int = 4):
        self.port = free_port()
        super().__init__("gunicorn", [sys.executable, "-m", "gunicorn", "brainscan.wsgi", "--bind",
                                      f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads),
                                      "--timeout", "120"],
                         log_dir / "gunicorn.log", env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/login/", timeout=5).status_code == 200
        except requests.RequestException:
            return False
