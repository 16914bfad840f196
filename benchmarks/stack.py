"""A whole BrainScan on this machine, started and stopped from Python, for the benchmarks.

`Stack` adds to the processes of the `stack` package (shared with the tests) a fresh database and
media folder with seeded clinicians and patients (benchmarks/load.py, benchmarks/end_to_end.py).
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

from stack.clients import SeededClinician, SeededPatient
from stack.processes import CeleryBeat, CeleryWorker, RedisServer, WebServer, port_open


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
