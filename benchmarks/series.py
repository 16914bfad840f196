"""A whole series through the real stack: the upload's memory in the web process, and the time to a result.

    python -m benchmarks.series [--slices 150] [--side 512] [--large-mb 600] [--database postgres] [--json]

- series_seconds: a DICOM series of `--slices` slices of `--side` x `--side` pixels, 16-bit (built from a
  tcga-lgg FLAIR volume when ../shared has it, else from phantoms), sent as one .zip through the REST API to
  gunicorn; seconds from the end of the upload (the API's answer) to the stored result, with 2 worker
  processes of one inference thread each (the machine's two cores).
- web_rss_mb_series / web_rss_mb_worst: the peak resident memory (VmHWM) of the gunicorn process that
  received a `--large-mb` MB series (1024 x 1024 slices), and the worst accepted request of separate
  slices (as many 25-megapixel PNGs as the per-request pixel budget admits, plus one 64 MB DICOM), each in a
  fresh web process; with the process's size before the request for comparison.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, report
from benchmarks.stack import Stack, default_database
from benchmarks.studies import settle
from stack.clients import ApiClient

TCGA = ROOT.parent / "shared" / "datasets" / "tcga-lgg"


def source_volume() -> tuple[np.ndarray, str]:
    """(slices, height, width) in [0, 1]: the longest tcga-lgg FLAIR volume, else a stack of phantoms."""
    from PIL import Image

    if (TCGA / "slices.csv").is_file():
        rows = [row for row in csv.DictReader(open(TCGA / "slices.csv")) if row["sequence"] == "flair"]
        by_patient: dict[str, list] = {}
        for row in rows:
            by_patient.setdefault(row["patient"], []).append(row)
        patient, chosen = max(by_patient.items(), key=lambda item: len(item[1]))
        chosen.sort(key=lambda row: int(row["slice"]))
        volume = np.stack([np.asarray(Image.open(TCGA / row["image"]).convert("L"), np.float32) / 255
                           for row in chosen])
        return volume, f"tcga-lgg {patient} FLAIR, {len(chosen)} slices, resampled"
    from ml.phantoms import make_phantom

    return np.stack([make_phantom(k, tumor=10 <= k <= 20) for k in range(40)]), "phantoms (../shared is absent)"


def resample(volume: np.ndarray, slices: int, side: int) -> np.ndarray:
    from scipy import ndimage

    factors = (slices / volume.shape[0], side / volume.shape[1], side / volume.shape[2])
    return np.clip(ndimage.zoom(volume, factors, order=1), 0, 1)


def series_zip(volume: np.ndarray) -> bytes:
    """One axial series of 16-bit DICOM files, stored (not compressed) in a .zip, file names shuffled."""
    from pydicom.uid import generate_uid

    from tests.privacy.samples import synthetic_mr, to_bytes

    study_uid, series_uid, buffer = generate_uid(), generate_uid(), io.BytesIO()
    order = np.random.default_rng(0).permutation(len(volume))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, k in enumerate(order):
            pixels = np.rint(volume[k] * 4095).astype(np.uint16)
            ds = synthetic_mr(pixels, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                              ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, 2.0 * float(k)],
                              InstanceNumber=int(k) + 1, WindowCenter=2048, WindowWidth=4096)
            archive.writestr(f"series/IM{name:05d}", to_bytes(ds))
    return buffer.getvalue()


def worst_slices(budget_pixels: int) -> list[tuple[str, bytes]]:
    """The largest request of separate slices the server accepts whole: 25-megapixel PNGs up to the pixel
    budget, and a DICOM file of 64 MB decoded."""
    from PIL import Image

    from tests.privacy.samples import synthetic_mr, to_bytes

    rng = np.random.default_rng(1)
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (5000, 5000), dtype=np.uint8)).save(png, "PNG", compress_level=1)
    count = max(1, min(19, (budget_pixels - 4096 * 4096) // 25_000_000))
    dicom = to_bytes(synthetic_mr(rng.integers(0, 4095, (4096, 4096)).astype(np.uint16)))  # 32 MB of pixels
    return [(f"big-{n}.png", png.getvalue()) for n in range(count)] + [("big.dcm", dicom)]


def web_peak_mb(stack: Stack) -> dict:
    """VmRSS and VmHWM (MB) of each gunicorn worker process."""
    import subprocess

    pids = subprocess.run(["pgrep", "-P", str(stack.web.process.pid)], capture_output=True, text=True).stdout.split()
    out = {}
    for pid in pids:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":" in line)
        out[pid] = {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}
    return out


def measure_request(stack: Stack, person, files: list[tuple[str, bytes]]) -> dict:
    """The peak memory of the web process that answers one request, in a freshly started web server."""
    stack.web.stop()
    stack.start_web()
    fresh = ApiClient(stack.web.url, person.username, person.password)
    before = web_peak_mb(stack)
    started = time.perf_counter()
    response = fresh.post_study(person.patient, files)
    seconds = time.perf_counter() - started
    after = web_peak_mb(stack)
    grown = max(after, key=lambda pid: after[pid]["VmHWM"] - before.get(pid, after[pid])["VmHWM"])
    return {"status": response.status_code, "peak_mb": after[grown]["VmHWM"], "before_mb": before[grown]["VmRSS"],
            "request_mb": sum(len(data) for _, data in files) / 1_048_576, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--large-mb", type=int, default=600, help="size of the series whose upload's memory is "
                                                                    "measured")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default=default_database())
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    volume, source = source_volume()
    series = series_zip(resample(volume, args.slices, args.side))
    large_slices = max(1, int(args.large_mb * 1_048_576 / (1024 * 1024 * 2 + 2000)))
    large = series_zip(resample(volume, min(large_slices, 400), 1024))
    with tempfile.TemporaryDirectory(prefix="brainscan-series-") as folder, Stack(Path(folder), args.database) as stack:
        stack.env["BRAINSCAN_MAX_SERIES_MB"] = str(max(600, args.large_mb + 10))
        person = stack.prepare(1)[0]
        stack.start_web()
        client = ApiClient(stack.web.url, person.username, person.password)
        stack.start_workers(2, 1)
        response = client.post_study(person.patient, [("series.zip", series)])
        uploaded = time.perf_counter()
        if response.status_code != 202:
            raise SystemExit(f"the series was refused: {response.status_code} {response.text[:500]}")
        study_id = response.json()["id"]
        settle([study_id], 600)
        series_seconds = time.perf_counter() - uploaded
        from diagnosis.models import Prediction, Study

        status = Study.objects.get(pk=study_id).status
        predictions = Prediction.objects.filter(image__study_id=study_id)
        # Counted now: the benchmark's database is dropped when the stack stops.
        stored, distinct = predictions.count(), predictions.values("image").distinct().count()
        stack.stop_workers()
        memory_series = measure_request(stack, person, [("large.zip", large)])
        budget = int(os.environ.get("BRAINSCAN_MAX_REQUEST_MEGAPIXELS", "256")) * 1_000_000
        memory_worst = measure_request(stack, person, worst_slices(budget))

    figures = {
        "series_seconds": series_seconds, "slices": args.slices, "side": args.side, "source": source,
        "series_status": status, "predictions": stored, "distinct_images_predicted": distinct,
        "web_rss_mb_series": memory_series["peak_mb"], "web_rss_mb_before": memory_series["before_mb"],
        "series_upload_mb": memory_series["request_mb"], "series_upload_status": memory_series["status"],
        "web_rss_mb_worst": memory_worst["peak_mb"], "worst_request_mb": memory_worst["request_mb"],
        "worst_request_status": memory_worst["status"], "worker_processes": 2, "database": args.database,
    }
    rows = [
        ("series_seconds", series_seconds, f"{args.slices} slices of {args.side}x{args.side}: upload answered to "
                                           "stored result, 2 worker processes (target <= 10)"),
        ("predictions", f"{figures['predictions']} / {figures['distinct_images_predicted']}",
         "stored / distinct slices (each slice once)"),
        ("web_rss_mb_series", memory_series["peak_mb"],
         f"web process peak while receiving a {memory_series['request_mb']:.0f} MB series (target < 300)"),
        ("web_rss_mb_worst", memory_worst["peak_mb"],
         f"worst accepted request of separate slices, {memory_worst['request_mb']:.0f} MB (target < 300)"),
        ("web_rss_mb_before", memory_series["before_mb"], "a fresh web process before the request"),
    ]
    report(f"Series benchmark ({source})", rows, figures, args.json)


if __name__ == "__main__":
    main()
