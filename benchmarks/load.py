"""Many studies from many API clients at once: nothing lost, nothing done twice, and how fast.

    python -m benchmarks.load [--studies 500] [--clients 20] [--processes 2] [--database postgres] [--json]

Everything runs for real on this machine, started from scratch: a fresh database and media folder,
a private Redis on a free port, gunicorn with two worker processes, one Celery worker with
`--processes` pool processes (each with cores / processes inference threads) and Celery beat.
Each client gets a token and submits its share of single-image studies one after another through
POST /api/v1/studies/. Figures are read from the database once every study has settled (or the
timeout has passed: a study still open then counts as lost).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import report
from benchmarks.stack import Stack, default_database
from stack.clients import ApiClient
from benchmarks.studies import outcome, settle, submit_concurrently


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--processes", type=int, default=min(2, cores), help="Celery pool processes")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default=default_database(),
                        help="default: postgres when it answers on 127.0.0.1:5432, else sqlite")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for every study to settle")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    threads = max(1, cores // args.processes)

    from benchmarks.inference import sample_pngs

    images = sample_pngs(64)
    with tempfile.TemporaryDirectory(prefix="brainscan-load-") as folder, Stack(Path(folder), args.database) as stack:
        seeded = stack.prepare(args.clients)
        stack.start_web()
        stack.start_workers(args.processes, threads)
        clients = [(ApiClient(stack.web.url, person.username, person.password), person.patient) for person in seeded]
        load_before = os.getloadavg()[0]
        burst = submit_concurrently(clients, args.studies, lambda n: [(f"slice-{n}.png", images[n % len(images)])])
        started = time.perf_counter()
        settle([item.study_id for item in burst.sent], args.timeout)
        figures = {
            **outcome(burst.sent), "refused": len(burst.refused), "clients": args.clients,
            "worker_processes": args.processes, "inference_threads": threads, "web_processes": stack.web_workers,
            "database": args.database, "cores": cores, "submit_seconds": burst.seconds,
            "settle_seconds_after_last_submission": time.perf_counter() - started,
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        }
    rows = [
        ("submitted", figures["submitted"], f"accepted (202) from {args.clients} concurrent API clients"),
        ("refused", figures["refused"], "submissions answered with an error"),
        ("completed", figures["completed"], ""),
        ("failed", figures["failed"], "ended failed, with a reason"),
        ("lost", figures["lost"], "accepted but neither completed nor failed (must be 0)"),
        ("duplicated_predictions", figures["duplicated_predictions"], "images predicted twice (must be 0)"),
        ("results_stored_twice", figures["results_stored_twice"], "studies whose result was stored twice (must be 0)"),
        *[(name, figures[name], note) for name, note in [
            ("e2e_ms_p50", "submission to stored result"), ("e2e_ms_p95", ""),
            ("submit_ms_p50", "the submission request alone"), ("studies_per_s", "first submission to last result"),
            ("worker_studies_per_s", "first claim to last result")] if name in figures],
        ("setup", f"{args.processes}x{threads} / {figures['web_processes']} web / {args.database}",
         "worker processes x inference threads, gunicorn processes, database"),
        ("load_average", f"{figures['load_average_before']:.1f} -> {figures['load_average_after']:.1f}",
         f"1-minute load on {cores} cores, before and after"),
    ]
    report(f"Load benchmark: {args.studies} studies", rows, figures, args.json)


if __name__ == "__main__":
    main()
