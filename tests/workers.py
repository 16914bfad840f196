"""Real Celery worker processes for the tests, pointed at the test database and a real broker.

The process handling (start, ready, kill -9, stop) is the stack package's, shared with the benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import connection

from stack.processes import ROOT, CeleryWorker, wait_for

__all__ = ["ROOT", "Worker", "test_database_url", "wait_for", "worker_env"]


def test_database_url() -> str:
    """The URL of the database the test process is using right now (the test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}"


def worker_env(**overrides: str) -> dict:
    """The environment of a process that should act on the test database, broker and files."""
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


class Worker(CeleryWorker):
    """One `celery worker` (main process plus its pool) on the test database, logging to a file."""

    def __init__(self, name: str, log_dir: Path, concurrency: int = 1, queues: str = "inference,default",
                 beat: bool = False, **env: str):
        super().__init__(name, log_dir, worker_env(**env), concurrency=concurrency, queues=queues, beat=beat)
