"""int8 serving: static quantization of the serving graph, and the parity it must keep with fp32.

ONNX Runtime's static quantization (QDQ format, per-channel int8 weights, int8 activations calibrated on
validation images) runs the network several times faster than fp32 on CPUs with int8 dot-product
instructions. The quantized graph is served only when, on the clean test split, it keeps:

- the AUC within 0.002 of fp32's,
- the same label for at least 99.5% of slices,
- the evidence map's peak in the same cell for at least 99% of tumor slices;

the largest probability difference is reported too. A model that misses any of these is served in fp32,
and the reason is recorded in its card (and logged).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from ml import evaluate

log = logging.getLogger(__name__)
INT8_FILE = "model.int8.onnx"
MAX_AUC_DROP = 0.002
MIN_SAME_LABEL = 0.995
MIN_SAME_PEAK = 0.99
CALIBRATION_IMAGES = 256


class _Reader:
    """Feeds calibration batches to ONNX Runtime's calibrator."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = 16):
        self.batches = iter([{input_name: images[i:i + batch].astype(np.float32)}
                             for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # part of the CalibrationDataReader protocol; one pass is enough here
        pass


def quantize(fp32_path: Path, int8_path: Path, calibration_images: np.ndarray) -> None:
    """Write the int8 (QDQ, per-channel) version of the serving graph, calibrated on `calibration_images`."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    session = onnxruntime.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        reader = _Reader(calibration_images, input_name)
        # The outputs are probabilities: the last activations and the pooling stay in float.
        quantize_static(str(prepared), str(int8_path), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=_output_nodes(prepared))


def _output_nodes(path: Path) -> list[str]:
    """Nodes after the last convolution (sigmoids, the smooth maximum): cheap, and where rounding would show."""
    import onnx

    graph = onnx.load(str(path)).graph
    last_conv = max((index for index, node in enumerate(graph.node) if node.op_type == "Conv"), default=-1)
    return [node.name for node in graph.node[last_conv + 1:]]


def run(path: Path, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n,) and evidence maps (n, h, w) of an ONNX serving graph."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probabilities, maps = [], []
    for start in range(0, len(images), batch):
        probability, evidence = session.run(None, {name: images[start:start + batch].astype(np.float32)})
        probabilities.append(probability.reshape(-1))
        maps.append(evidence[..., 0])
    return np.concatenate(probabilities), np.concatenate(maps)


def parity(fp32_path: Path, int8_path: Path, images: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """How the int8 graph compares with fp32 on `images` (the clean test split), and whether it may be served."""
    p32, maps32 = run(fp32_path, images)
    p8, maps8 = run(int8_path, images)
    tumor = np.asarray(labels).astype(bool)
    peak32 = maps32.reshape(len(maps32), -1).argmax(axis=1)
    peak8 = maps8.reshape(len(maps8), -1).argmax(axis=1)
    figures = {"n": int(len(images)), "auc_fp32": evaluate.auc(labels, p32), "auc_int8": evaluate.auc(labels, p8),
               "same_label": float(((p32 >= threshold) == (p8 >= threshold)).mean()),
               "max_probability_difference": float(np.abs(p32 - p8).max()),
               "same_peak_cell_on_tumor_slices": float((peak32[tumor] == peak8[tumor]).mean()) if tumor.any() else None}
    figures["auc_difference"] = figures["auc_int8"] - figures["auc_fp32"]
    failures = []
    if abs(figures["auc_difference"]) > MAX_AUC_DROP:
        failures.append(f"the AUC moves by {figures['auc_difference']:+.4f} (allowed {MAX_AUC_DROP})")
    if figures["same_label"] < MIN_SAME_LABEL:
        failures.append(f"the label agrees on {figures['same_label']:.2%} of slices (needed {MIN_SAME_LABEL:.1%})")
    same_peak = figures["same_peak_cell_on_tumor_slices"]
    if same_peak is not None and same_peak < MIN_SAME_PEAK:
        failures.append(f"the heatmap's peak cell agrees on {same_peak:.2%} of tumor slices "
                        f"(needed {MIN_SAME_PEAK:.0%})")
    figures["passed"] = not failures
    figures["failures"] = failures
    figures["criteria"] = {"max_auc_difference": MAX_AUC_DROP, "min_same_label": MIN_SAME_LABEL,
                           "min_same_peak_cell": MIN_SAME_PEAK, "measured_on": "the clean test split"}
    if failures:
        log.warning("int8 serving graph refused: %s; serving fp32", "; ".join(failures))
    return figures
