"""GET /healthz: is every part BrainScan needs up? 200 when all are, 503 otherwise.

Anyone (a load balancer, a container probe) gets the bare status; what each part is (database engine,
broker, storage, model version, workers) is shown only to staff or with an API token, since it tells
an attacker what to aim at.
"""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from diagnosis.inference import ModelUnavailable, serving_version
from diagnosis.models import WorkerHeartbeat
from ml.registry import ModelVersion, RegistryError

HEARTBEAT_STALE_SECONDS = 90


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "engine": connection.vendor}


def check_broker() -> dict:
    from brainscan.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"ok": True, "transport": conn.transport.driver_type}


def check_storage() -> dict:
    name = default_storage.save(f"healthz/{uuid.uuid4().hex}", ContentFile(b"ok"))
    try:
        with default_storage.open(name, "rb") as handle:
            readable = handle.read() == b"ok"
    finally:
        default_storage.delete(name)
    return {"ok": readable, "backend": settings.STORAGE_BACKEND}


@functools.lru_cache(maxsize=8)
def _intact(path: str, file_states: tuple) -> str:
    """'' when the version's files match their recorded sha256, else why not; cached per state of its files."""
    try:
        ModelVersion(Path(path).name, Path(path)).verify()
    except (RegistryError, OSError) as error:
        return str(error)
    return ""


def check_model() -> dict:
    """The served version exists and its files are the ones registered (workers refuse any other)."""
    version = serving_version()
    # Re-hashed only when a file of the version changes, as seen by its size and modification time.
    states = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(version.path.iterdir()))
    problem = _intact(str(version.path), states)
    return {"ok": not problem, "version": version.name, **({"error": problem} if problem else {})}


def check_worker() -> dict:
    beat = WorkerHeartbeat.objects.order_by("-last_seen").first()
    if beat is None:
        return {"ok": False, "error": "no worker has reported yet"}
    age = (timezone.now() - beat.last_seen).total_seconds()
    return {"ok": age <= HEARTBEAT_STALE_SECONDS, "last_heartbeat_age_s": round(age, 1),
            "workers": WorkerHeartbeat.objects.filter(
                last_seen__gte=timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS)).count(),
            "model_version": beat.model_version}


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage, "model": check_model,
          "worker": check_worker}


@never_cache
@require_GET
def livez(request):
    """Liveness for the container probe: the application server answers. Nothing else on purpose: restarting
    the web server would not fix a database or worker outage, which /healthz reports."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_GET
def healthz(request):
    report = {}
    for name, check in CHECKS.items():
        try:
            report[name] = check()
        except ModelUnavailable as error:
            report[name] = {"ok": False, "error": str(error)}
        except Exception as error:  # a health check reports every failure instead of raising it
            report[name] = {"ok": False, "error": type(error).__name__}
    healthy = all(part["ok"] for part in report.values())
    body = {"status": "ok" if healthy else "unavailable"}
    if _may_see_details(request):
        body["checks"] = report
    else:
        body["failing"] = sorted(name for name, part in report.items() if not part["ok"])
    return JsonResponse(body, status=200 if healthy else 503)


def _may_see_details(request) -> bool:
    from diagnosis.api.authentication import ApiTokenAuthentication
    from diagnosis.selectors import is_admin

    if is_admin(request.user):
        return True
    try:
        found = ApiTokenAuthentication().authenticate(request)
    except Exception:  # a bad token: no details, the status still answers
        return False
    return found is not None
