"""A whole BrainScan on this machine, started and stopped from Python.

The parts are real processes, each in its own session and logging to its own file: a private
`redis-server` on a free port (never the machine's shared one), gunicorn, Celery workers and the
Celery beat that runs the sweeper. `Stack` adds a fresh database and media folder with seeded
clinicians and patients, for the benchmarks (benchmarks/load.py, benchmarks/end_to_end.py); the
reliability tests use the same process classes against the test database (tests/workers.py).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
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


# --- Clients: the REST API, and the web form's JSON answer ----------------------------------------


class SubmissionRefused(Exception):
    pass


class WebFormClient:
    """A clinician in a browser session: the upload form, answered in JSON (Accept: application/json)."""

    via = "web"

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.get(f"{base_url}/login/", timeout=30)
        response = self.session.post(f"{base_url}/login/", timeout=30, allow_redirects=False, data={
            "username": username, "password": password, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]})
        if response.status_code != 302:
            raise SubmissionRefused(f"login of {username} failed with {response.status_code}")

    def post_study(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> requests.Response:
        return self.session.post(
            f"{self.base_url}/studies/new/", timeout=60, data={"patient": patient.pk},
            files=[("images", (name, data, "application/octet-stream")) for name, data in files],
            headers={"Accept": "application/json", "X-CSRFToken": self.session.cookies["csrftoken"],
                     "Referer": f"{self.base_url}/studies/new/"})

    def submit(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> str:
        """The new study's id; SubmissionRefused unless the study was created."""
        response = self.post_study(patient, files)
        if response.status_code != 201:
            raise SubmissionRefused(f"{response.status_code}: {response.text[:300]}")
        return re.search(r"/studies/([0-9a-f-]{36})/", response.json()["url"]).group(1)

    def status(self, study_id: str) -> str:
        return self.session.get(f"{self.base_url}/studies/{study_id}/status/", timeout=30).json()["status"]


class ApiClient:
    """Another hospital system: the REST API with a token (POST /api/v1/auth/token/)."""

    via = "api"

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.session = requests.Session()
        response = self.session.post(f"{base_url}/api/v1/auth/token/", timeout=30,
                                     json={"username": username, "password": password})
        if response.status_code != 201:
            raise SubmissionRefused(f"token for {username} refused with {response.status_code}")
        self.session.headers["Authorization"] = f"Token {response.json()['token']}"

    def post_study(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> requests.Response:
        return self.session.post(f"{self.base_url}/api/v1/studies/", timeout=60, data={"patient": patient.code},
                                 files=[("images", (name, data, "application/octet-stream")) for name, data in files])

    def submit(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> str:
        """The new study's id; SubmissionRefused unless the study was accepted."""
        response = self.post_study(patient, files)
        if response.status_code != 202:
            raise SubmissionRefused(f"{response.status_code}: {response.text[:300]}")
        return response.json()["id"]

    def status(self, study_id: str) -> str:
        return self.session.get(f"{self.base_url}/api/v1/studies/{study_id}/", timeout=30).json()["status"]


@dataclass(frozen=True)
class SeededPatient:
    pk: int
    code: str


@dataclass(frozen=True)
class SeededClinician:
    username: str
    password: str
    patient: SeededPatient


def seed_clinicians(count: int) -> list[SeededClinician]:
    """Clinicians, each on the care team of a patient of their own who consented to AI analysis.

    Runs in a process where Django is set up against the stack's database.
    """
    from django.contrib.auth import get_user_model

    from diagnosis import services
    from diagnosis.models import Patient

    User = get_user_model()
    admin = User.objects.create_superuser(f"bench-admin-{uuid.uuid4().hex[:6]}", password=secrets.token_urlsafe())
    seeded = []
    for n in range(count):
        password = secrets.token_urlsafe(16)
        user = User.objects.create_user(f"bench-clinician-{n}-{uuid.uuid4().hex[:6]}", password=password)
        patient = Patient.objects.create()
        patient.care_team.add(user)
        services.grant_consent(patient=patient, actor=admin)
        seeded.append(SeededClinician(user.username, password, SeededPatient(patient.pk, patient.code)))
    return seeded


# --- A whole installation with its own database, for the benchmarks -------------------------------------


def default_database() -> str:
    """PostgreSQL (what production runs) when it answers on 127.0.0.1:5432, else SQLite."""
    return "postgres" if port_open(5432) else "sqlite"


class Stack:
    """A fresh database and media folder, a private Redis, gunicorn and Celery, set up from this process.

    `database` is "postgres" (a new database on 127.0.0.1:5432, dropped at the end) or "sqlite".
    Call `prepare()` before anything imports Django models: it points this process's Django at the
    stack's database, migrates it and seeds it.
    """

    def __init__(self, folder: Path, database: str = "postgres", web_workers: int = 2):
        self.folder = folder
        self.database = database
        self.web_workers = web_workers
        self.redis = RedisServer(folder / "redis")
        self.db_name = f"brainscan_bench_{uuid.uuid4().hex[:8]}"
        database_url = (f"postgres://postgres@127.0.0.1:5432/{self.db_name}" if database == "postgres"
                        else f"sqlite:///{folder / 'brainscan.sqlite3'}")
        self.env = {
            "DJANGO_SETTINGS_MODULE": "brainscan.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url,
            "CELERY_BROKER_URL": self.redis.url,
            "BRAINSCAN_VAR_DIR": str(folder / "var"),
            "BRAINSCAN_MEDIA_ROOT": str(folder / "media"),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            # The benchmarks measure throughput, not the request limits.
            "BRAINSCAN_API_USER_RATE": "1000000/minute",
            "BRAINSCAN_API_ANON_RATE": "1000000/minute",
        }
        self.web: WebServer | None = None
        self.workers: list[CeleryWorker] = []
        self.beat: CeleryBeat | None = None

    def prepare(self, clinicians: int) -> list[SeededClinician]:
        if self.database == "postgres":
            self._postgres(f'CREATE DATABASE "{self.db_name}"')
        os.environ.update(self.env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        self.redis.start()
        return seed_clinicians(clinicians)

    def start_web(self) -> WebServer:
        self.web = WebServer(self.folder / "logs", self.env, workers=self.web_workers).start()
        return self.web

    def start_workers(self, processes: int, threads: int, **env: str) -> CeleryWorker:
        """One Celery worker with `processes` pool processes of `threads` inference threads each, and beat."""
        worker = CeleryWorker(f"bench{len(self.workers)}", self.folder / "logs", concurrency=processes,
                              env={**self.env, "BRAINSCAN_INFERENCE_THREADS": str(threads), **env}).start(120)
        self.workers.append(worker)
        if self.beat is None:
            self.beat = CeleryBeat(self.folder / "logs", self.env).start()
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def close(self) -> None:
        for service in [*self.workers, self.beat, self.web, self.redis]:
            if service is not None:
                service.stop()
        if self.database == "postgres":
            from django.db import connections

            connections.close_all()
            self._postgres(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    @staticmethod
    def _postgres(statement: str) -> None:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(statement)

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
