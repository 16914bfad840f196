"""Convert a Keras graph to ONNX and prove it gives the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_OPSET = 17
MAX_PROBABILITY_DIFFERENCE = 1e-4


class ExportMismatch(RuntimeError):
    pass


def export_onnx(model, path: Path, check_inputs: np.ndarray) -> float:
    """Write `model` (first output: a probability per input) to `path` as ONNX.

    Returns the largest probability difference between Keras and ONNX Runtime on `check_inputs`,
    and refuses to leave a file behind that differs by more than 1e-4.
    """
    import tensorflow as tf
    import tf2onnx

    name = model.inputs[0].name.split(":")[0]
    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=name),)
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET, output_path=str(path))
    outputs = model(check_inputs, training=False)
    expected = np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs).reshape(-1)
    difference = float(np.abs(onnx_probabilities(path, check_inputs) - expected).max())
    if difference > MAX_PROBABILITY_DIFFERENCE:
        Path(path).unlink()
        raise ExportMismatch(f"ONNX and Keras probabilities differ by {difference:.2e}")
    return difference


def onnx_probabilities(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)})[0].reshape(-1)
