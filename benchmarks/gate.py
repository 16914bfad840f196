"""The quality gate on images it never saw: what it refuses, what it lets through, and what it costs.

    python -m benchmarks.gate [--model VERSION] [--data DIR ...] [--json]

Refused (target >= 95%): the sample images bundled with scikit-image and pydicom, which are reserved
for testing the gate (ml.gate_training never uses them): photos, documents, microscopy, textures,
and DICOM files of every modality but MR. pydicom's MR files are listed apart, image by image: some
are brain slices, some phantoms or other body parts, so no share of them is "right".
Accepted (target: at most 1% refused): the brain-mri slices of the model card's test split, and
every tcga-lgg slice whose listed head fraction is at least 0.15, per sequence, on the card's test
patients and on all patients (training patients trained the gate, so that figure is optimistic).
Cost (target: at most 2 ms): the gate's time per image, beside the network's, in the same run.
Every image goes through ml.files.read_file, the worker's own reader.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, percentile, report

SKIMAGE_SAMPLES = (
    "astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms",
    "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)
HEAD_FRACTION = 0.15
BATCH = 64


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        array = np.rint(255 * (array - array.min()) / max(float(array.max() - array.min()), 1e-9)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def skimage_files() -> dict[str, bytes]:
    """Each bundled scikit-image sample as a PNG file, and the left view of the stereo pair."""
    import skimage.data

    files = {}
    for name in SKIMAGE_SAMPLES:
        try:
            files[f"skimage/{name}"] = _png(getattr(skimage.data, name)())
        except (AttributeError, ModuleNotFoundError, OSError):  # absent from this scikit-image release
            continue
    files["skimage/stereo_motorcycle"] = _png(skimage.data.stereo_motorcycle()[0])
    return files


def pydicom_files() -> dict[str, bytes]:
    """pydicom's bundled test files whose header parses (modality read later, by the worker's reader)."""
    import pydicom.data

    return {f"pydicom/{Path(path).name}": Path(path).read_bytes() for path in sorted(pydicom.data.get_testdata_files())
            if Path(path).is_file() and Path(path).suffix.lower() in (".dcm", "")}


def decide(predictor, files: dict[str, bytes]) -> dict[str, dict]:
    """One decision per file (its first frame): refused or not, why, and its modality; unreadable files apart."""
    from ml.files import read_file
    from ml.imaging import UnreadableImage

    out = {}
    for name, data in files.items():
        try:
            image = read_file(data)
        except (UnreadableImage, ValueError, NotImplementedError, RuntimeError) as error:
            out[name] = {"readable": False, "why": str(error)[:120]}
            continue
        assessment = predictor.assess(image.slices[:1], with_features=False, modalities=[image.modality])[0]
        out[name] = {"readable": True, "modality": image.modality, "refused": not assessment.usable,
                     "code": assessment.quality.code}
    return out


def refused_share(predictor, paths: list[Path]) -> tuple[int, float, dict]:
    """(images, share refused, refusals by code) over image files, read as the worker reads them."""
    from ml.files import read_file

    refused, codes = 0, {}
    for start in range(0, len(paths), BATCH):
        images = [read_file(path).slices[0] for path in paths[start:start + BATCH]]
        for assessment in predictor.assess(images, with_features=False):
            if not assessment.usable:
                refused += 1
                codes[assessment.quality.code] = codes.get(assessment.quality.code, 0) + 1
    return len(paths), refused / max(len(paths), 1), codes


def real_slices(predictor, card: dict, data_dirs: list[Path]) -> dict:
    from ml.data import find_samples

    out = {}
    test_files, test_patients = set(card["split"]["test_files"]), set(card["split"].get("test_patients", []))
    for root in data_dirs:
        samples = find_samples(root)
        if any(s.listed_head_fraction is not None for s in samples):
            for sequence in sorted({s.sequence for s in samples}):
                kept = [s for s in samples if s.sequence == sequence and (s.listed_head_fraction or 0) >= HEAD_FRACTION]
                for part, chosen in (("test_patients", [s for s in kept if s.subject in test_patients]), ("all", kept)):
                    n, share, codes = refused_share(predictor, [s.path for s in chosen])
                    out[f"{root.name}/{sequence}/{part}"] = {"n": n, "false_rejection": share, "codes": codes}
        else:
            chosen = [s.path for s in samples if f"{root.name}/{s.path.relative_to(root)}" in test_files]
            n, share, codes = refused_share(predictor, chosen)
            out[f"{root.name}/test_split"] = {"n": n, "false_rejection": share, "codes": codes}
    return out


def gate_cost(predictor, iterations: int) -> dict:
    """Milliseconds per image, one image at a time: the gate (rules and learned check) and the network."""
    from ml.phantoms import make_phantom
    from ml.preprocess import prepare

    images = [make_phantom(seed, seed % 2 == 0) for seed in range(16)]
    prepared = [prepare(image, predictor.image_size, predictor.intensity_reference) for image in images]
    gate_ms, network_ms = [], []
    predictor.quality(prepared[:1], [images[0].shape])
    for i in range(iterations):
        p, shape = prepared[i % len(prepared)], images[i % len(images)].shape
        started = time.perf_counter()
        predictor.quality([p], [shape])
        middle = time.perf_counter()
        predictor.network(p.tensor[np.newaxis])
        gate_ms.append((middle - started) * 1000)
        network_ms.append((time.perf_counter() - middle) * 1000)
    return {"gate_ms_p50": percentile(gate_ms, 50), "gate_ms_p95": percentile(gate_ms, 95),
            "network_ms_p50": percentile(network_ms, 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model version (default: the active one)")
    parser.add_argument("--registry", default=None, help="model registry folder (default: models/)")
    parser.add_argument("--data", action="append", default=[], help="a collection folder (repeatable): real slices")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    from ml.predictor import Predictor
    from ml.registry import ModelRegistry

    registry = ModelRegistry(args.registry or ROOT / "models")
    version = registry.get(args.model) if args.model else registry.active()
    predictor = Predictor(version, threads=1)
    images = decide(predictor, skimage_files())
    dicoms = decide(predictor, pydicom_files())
    non_mr = {name: d for name, d in dicoms.items() if d["readable"] and d["modality"].upper() != "MR"}
    mr = {name: d for name, d in dicoms.items() if d["readable"] and d["modality"].upper() == "MR"}
    reserved = {**images, **non_mr}
    figures = {
        "model_version": version.name,
        "reserved_n": len(reserved),
        "reserved_refused_share": float(np.mean([d["refused"] for d in reserved.values()])),
        "skimage_n": len(images), "skimage_refused_share": float(np.mean([d["refused"] for d in images.values()])),
        "non_mr_dicom_n": len(non_mr),
        "non_mr_dicom_refused_share": float(np.mean([d["refused"] for d in non_mr.values()])) if non_mr else None,
        "accepted_reserved": sorted(name for name, d in reserved.items() if not d["refused"]),
        "mr_dicom": {name: d["code"] or "accepted" for name, d in mr.items()},
        "dicom_unreadable": len([d for d in dicoms.values() if not d["readable"]]),
        "real_slices": real_slices(predictor, version.card, [Path(d) for d in args.data]),
        **gate_cost(predictor, args.iterations),
    }
    rows = [
        ("model", version.name, ""),
        ("reserved_refused_share", figures["reserved_refused_share"],
         f"of {figures['reserved_n']} reserved samples (target >= 0.95)"),
        ("skimage_refused_share", figures["skimage_refused_share"], f"of {figures['skimage_n']} scikit-image samples"),
        ("non_mr_dicom_refused_share", figures["non_mr_dicom_refused_share"],
         f"of {figures['non_mr_dicom_n']} pydicom files that are not MR"),
        ("accepted_reserved", ", ".join(figures["accepted_reserved"]) or "-", ""),
        *[(f"pydicom MR {name}", code, "") for name, code in figures["mr_dicom"].items()],
        *[(f"false rejection {name}", entry["false_rejection"], f"of {entry['n']} real slices (target <= 0.01)")
          for name, entry in figures["real_slices"].items()],
        ("gate_ms_p50", figures["gate_ms_p50"], "rules + learned check, one image (target <= 2)"),
        ("network_ms_p50", figures["network_ms_p50"], "the network, same image, same run"),
    ]
    report("Quality gate benchmark (1 thread)", rows, figures, args.json)


if __name__ == "__main__":
    main()
