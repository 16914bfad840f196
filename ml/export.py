"""Convert the trained classifier to the ONNX serving graph and prove it gives the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_OPSET = 17
MAX_PROBABILITY_DIFFERENCE = 1e-4


class ExportMismatch(RuntimeError):
    pass


def export_onnx(serving, path: Path, check_images: np.ndarray) -> float:
    """Write the serving graph (probability, class activation map; see ml.model) to `path`.

    Returns the largest probability difference between Keras and ONNX Runtime on
    `check_images`, and refuses to leave a file behind that differs by more than 1e-4.
    """
    import tensorflow as tf
    import tf2onnx

    size = serving.input_shape[1]
    signature = (tf.TensorSpec((None, size, size, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(serving, input_signature=signature, opset=ONNX_OPSET, output_path=str(path))
    expected = np.asarray(serving(check_images, training=False)[0]).reshape(-1)
    difference = float(np.abs(onnx_probabilities(path, check_images) - expected).max())
    if difference > MAX_PROBABILITY_DIFFERENCE:
        Path(path).unlink()
        raise ExportMismatch(f"ONNX and Keras probabilities differ by {difference:.2e}")
    return difference


def onnx_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0].reshape(-1)
