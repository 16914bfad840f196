"""From the API submission to the stored result, over Redis, with one and then two worker processes.

    python -m benchmarks.end_to_end [--single 30] [--burst 200] [--repeats 2] [--database postgres] [--json]

Everything runs for real on this machine, started from scratch (benchmarks.stack): a fresh database,
a private Redis, gunicorn with two processes and Celery. Worker processes x BRAINSCAN_INFERENCE_THREADS
equals the cores in both layouts.

- Low load: one worker process; single-image studies sent one at a time, each after the previous one
  is stored: e2e_ms_p50 and e2e_ms_p95 from just before the POST to the stored result.
- Burst: `--burst` studies are submitted while no worker runs, then the workers start; the rate is
  measured from the first claim to the last stored result, with one process (studies_per_s_1) and with
  two (studies_per_s_2), alternated `--repeats` times in the same run (medians reported), with the
  share of the machine's CPU that was busy meanwhile (every process: the workers, PostgreSQL, others).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from statistics import median

from benchmarks.common import report
from benchmarks.stack import Stack, default_database
from stack.clients import ApiClient
from benchmarks.studies import machine_cpu, outcome, settle, submit_concurrently, submit_one

CLIENTS = 8


def low_load(stack: Stack, client, patient, images: list[bytes], count: int) -> dict:
    sent = []
    for n in range(count):
        sent.append(submit_one(client, patient, [(f"single-{n}.png", images[n % len(images)])]))
        settle([sent[-1].study_id], 60)
    return outcome(sent)


def drain(stack: Stack, clients: list[tuple], images: list[bytes], count: int, processes: int, threads: int) -> dict:
    """Queue `count` studies with no worker running, then let `processes` pool processes work them off."""
    stack.stop_workers()
    burst = submit_concurrently(clients, count, lambda n: [(f"burst-{n}.png", images[n % len(images)])])
    figures = {"refused": len(burst.refused)}
    stack.start_workers(processes, threads)
    with machine_cpu(figures):
        settle([item.study_id for item in burst.sent], 600)
    return {**outcome(burst.sent), **figures}


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=30, help="studies sent one at a time at low load")
    parser.add_argument("--burst", type=int, default=200, help="studies in each burst")
    parser.add_argument("--repeats", type=int, default=2, help="bursts per layout, alternated")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default=default_database(),
                        help="default: postgres when it answers on 127.0.0.1:5432, else sqlite")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    from benchmarks.inference import sample_pngs

    images = sample_pngs(64)
    with tempfile.TemporaryDirectory(prefix="brainscan-e2e-") as folder, Stack(Path(folder), args.database) as stack:
        seeded = stack.prepare(CLIENTS)
        stack.start_web()
        clients = [(ApiClient(stack.web.url, person.username, person.password), person.patient) for person in seeded]
        load_before = os.getloadavg()[0]
        stack.start_workers(1, cores)
        single = low_load(stack, *clients[0], images, args.single)
        bursts = {1: [], 2: []}
        for _ in range(args.repeats):  # alternated, so that a change in the machine's load hits both alike
            bursts[1].append(drain(stack, clients, images, args.burst, 1, cores))
            bursts[2].append(drain(stack, clients, images, args.burst, 2, max(1, cores // 2)))
        load_after = os.getloadavg()[0]

    runs = [single, *bursts[1], *bursts[2]]
    problems = {name: sum(run[name] for run in runs)
                for name in ("lost", "failed", "duplicated_predictions", "results_stored_twice")}
    rate = {n: median(run["worker_studies_per_s"] for run in bursts[n]) for n in bursts}
    figures = {
        "e2e_ms_p50": single["e2e_ms_p50"], "e2e_ms_p95": single["e2e_ms_p95"],
        "submit_ms_p50": single["submit_ms_p50"],
        "studies_per_s_1": rate[1], "studies_per_s_2": rate[2], "scaling_2_vs_1": rate[2] / rate[1],
        "studies_per_s_1_runs": [run["worker_studies_per_s"] for run in bursts[1]],
        "studies_per_s_2_runs": [run["worker_studies_per_s"] for run in bursts[2]],
        "cpu_busy_1": median(run["cpu_busy"] for run in bursts[1]),
        "cpu_busy_2": median(run["cpu_busy"] for run in bursts[2]),
        "single_studies": args.single, "burst_studies": args.burst, "repeats": args.repeats, "cores": cores,
        "database": args.database, "load_average_before": load_before, "load_average_after": load_after, **problems,
    }
    rows = [
        ("e2e_ms_p50", figures["e2e_ms_p50"], "API submission to stored result, one study at a time (target <= 300)"),
        ("e2e_ms_p95", figures["e2e_ms_p95"], ""),
        ("submit_ms_p50", figures["submit_ms_p50"], "the POST alone: decode, store, audit, enqueue"),
        ("studies_per_s_1", figures["studies_per_s_1"], f"burst of {args.burst}: 1 process x {cores} threads, "
                                                        f"machine CPU {figures['cpu_busy_1']:.0%} busy"),
        ("studies_per_s_2", figures["studies_per_s_2"], f"burst of {args.burst}: 2 processes x "
                                                        f"{max(1, cores // 2)} thread(s), machine CPU "
                                                        f"{figures['cpu_busy_2']:.0%} busy"),
        ("scaling_2_vs_1", figures["scaling_2_vs_1"], f"target >= 1.6 (medians of {args.repeats} alternated runs)"),
        ("lost / failed / duplicated", f"{problems['lost']} / {problems['failed']} / "
                                       f"{problems['duplicated_predictions'] + problems['results_stored_twice']}",
         "over every study of the run (must be 0)"),
        ("load_average", f"{load_before:.1f} -> {load_after:.1f}", f"1-minute load on {cores} cores, before and after"),
    ]
    report("End-to-end benchmark (API, Redis, Celery)", rows, figures, args.json)


if __name__ == "__main__":
    main()
