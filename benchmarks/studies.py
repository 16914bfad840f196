"""Submitting studies to a running stack and measuring what became of them, from the database.

Shared by benchmarks.load and benchmarks.end_to_end. A study's time to result runs from just before
its submission request is sent (this machine's clock) to the moment its result was stored
(Study.finished_at, written by the worker on the same machine).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import percentile
from stack.clients import SubmissionRefused
from stack.processes import wait_for


@dataclass
class Sent:
    study_id: str
    submitted_at: float  # epoch seconds, just before the request
    answered_ms: float  # how long the submission request took


@dataclass
class Burst:
    sent: list[Sent] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why each refused submission was refused
    seconds: float = 0.0  # from the first request to the last answer


def submit_one(client, patient, files) -> Sent:
    started, clock = time.time(), time.perf_counter()
    study_id = client.submit(patient, files)
    return Sent(study_id, started, (time.perf_counter() - clock) * 1000)


def submit_concurrently(clients: list[tuple], total: int, files_for) -> Burst:
    """Each (client, patient) pair submits its share of `total` studies in its own thread, one after
    another; `files_for(n)` gives the files of the n-th study."""
    burst, lock = Burst(), threading.Lock()
    shares = [total // len(clients) + (1 if index < total % len(clients) else 0) for index in range(len(clients))]
    offsets = [sum(shares[:index]) for index in range(len(clients))]

    def run(client, patient, share: int, offset: int) -> None:
        for n in range(offset, offset + share):
            try:
                sent = submit_one(client, patient, files_for(n))
            except (SubmissionRefused, OSError) as error:
                with lock:
                    burst.refused.append(f"{type(error).__name__}: {error}"[:200])
                continue
            with lock:
                burst.sent.append(sent)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(client, patient, share, offset))
               for (client, patient), share, offset in zip(clients, shares, offsets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burst.seconds = time.perf_counter() - started
    return burst


def settle(study_ids: list[str], timeout: float) -> bool:
    """Wait until every study is completed or failed; False if some are still open after `timeout` s."""
    from diagnosis.models import Study

    def settled() -> bool:
        return Study.objects.filter(pk__in=study_ids, status__in=[Study.Status.COMPLETED, Study.Status.FAILED]
                                    ).count() == len(study_ids)

    try:
        wait_for(settled, timeout, interval=0.01 if len(study_ids) == 1 else 0.5)
        return True
    except TimeoutError:
        return False


def outcome(sent: list[Sent]) -> dict:
    """What became of the submitted studies: counts, duplicates, times to result and the rate."""
    from django.db.models import Count

    from diagnosis.models import AuditEvent, Prediction, Study

    ids = [item.study_id for item in sent]
    rows = {str(row["pk"]): row for row in Study.objects.filter(pk__in=ids).values("pk", "status", "finished_at",
                                                                                   "started_at")}
    completed = [item for item in sent if rows.get(item.study_id, {}).get("status") == Study.Status.COMPLETED]
    failed = sum(1 for item in sent if rows.get(item.study_id, {}).get("status") == Study.Status.FAILED)
    latencies = [(rows[item.study_id]["finished_at"].timestamp() - item.submitted_at) * 1000 for item in completed]
    duplicated = (Prediction.objects.filter(image__study_id__in=ids).values("image_id", "model_version")
                  .annotate(n=Count("id")).filter(n__gt=1).count())
    stored_twice = (AuditEvent.objects.filter(action=AuditEvent.Action.PREDICTION_STORED, object_id__in=ids)
                    .values("object_id").annotate(n=Count("id")).filter(n__gt=1).count())
    figures = {"submitted": len(sent), "completed": len(completed), "failed": failed,
               "lost": len(sent) - len(completed) - failed, "duplicated_predictions": duplicated,
               "results_stored_twice": stored_twice}
    if completed:
        finished = [rows[item.study_id]["finished_at"].timestamp() for item in completed]
        started = [rows[item.study_id]["started_at"].timestamp() for item in completed]
        figures.update({
            "e2e_ms_p50": percentile(latencies, 50), "e2e_ms_p95": percentile(latencies, 95),
            "submit_ms_p50": percentile([item.answered_ms for item in sent], 50),
            "submit_ms_p95": percentile([item.answered_ms for item in sent], 95),
            # From the first submission to the last stored result.
            "studies_per_s": len(completed) / max(max(finished) - min(item.submitted_at for item in sent), 1e-9),
            # From the first claim by a worker to the last stored result: what the workers achieve.
            "worker_studies_per_s": len(completed) / max(max(finished) - min(started), 1e-9),
        })
    return figures


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@contextmanager
def machine_cpu(into: dict, key: str = "cpu_busy"):
    """Record in `into[key]` the share of the machine's CPU time that was busy (any process) meanwhile."""
    busy, total = _cpu_times()
    yield
    busy_after, total_after = _cpu_times()
    into[key] = (busy_after - busy) / max(total_after - total, 1)
