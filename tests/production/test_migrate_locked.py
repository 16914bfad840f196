"""Web servers starting together (replicas, several hosts) each run `migrate_locked` on start: on
PostgreSQL they take turns, so a fresh database ends fully migrated and none of them fails."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.conftest import need, port_open
from tests.production.conftest import ROOT, clean_env

pytestmark = [pytest.mark.no_db, pytest.mark.slow]
SERVER = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
def fresh_database():
    need(port_open("127.0.0.1", 5432), "PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"brainscan_prod_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_concurrent_starts_migrate_a_fresh_database_once(fresh_database, tmp_path):
    env = clean_env(tmp_path, DATABASE_URL=fresh_database)
    starts = [subprocess.Popen([sys.executable, "manage.py", "migrate_locked"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(process.wait(180), *process.communicate()) for process in starts]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    applied = ["Applying" in out for _, out, _ in results]
    assert applied.count(True) == 1  # one applied everything; the others found nothing left to do
    plan = subprocess.run([sys.executable, "manage.py", "showmigrations", "--plan"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout
    assert "[X]" in plan and "[ ]" not in plan
