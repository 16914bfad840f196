"""The quality gate: is this image a brain MRI slice the model can assess? If not, why not.

Checked in order, the first failure being the reason given:

1. the DICOM header, when there is one: the modality must be MR; a JPEG or PNG in colour is refused;
2. the image's size: at least MIN_ASSESSABLE_SIDE pixels on its shorter side;
3. statistics on the preprocess's head mask: an empty or uniform image, noise (neighbouring pixels
   as different as random ones), too little head;
4. a small learned check (ml.gate_training): a network trained to tell whole brain MRI slices from
   images the project makes itself (documents, textures, shapes, natural-image models, ultrasound-,
   microscopy- and radiograph-like images, parts of slices), on the whole image and the head crop.

The network's probability is computed for every image anyway (evaluation must not let a gate hide
misses), but a clinician sees none for an image the gate refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.preprocess import Prepared, resize

GATE_SIZE = 64
# The modality given to a JPEG or PNG in colour (ml.imaging.COLOUR_SPREAD): DICOM's code for external-camera
# photography. MRI slices are gray.
PHOTOGRAPH = "XC"
MIN_ASSESSABLE_SIDE = 64
UNIFORM_STD = 0.01
MIN_HEAD_SHARE = 0.03
NOISE_ROUGHNESS = 0.8  # real slices stay below 0.71 (measured over 590 slices of both collections)


@dataclass(frozen=True)
class Decision:
    usable: bool
    code: str = ""  # "" when usable
    message: str = ""
    score: float | None = None  # the learned check's "brain MRI slice" probability, when it ran

    def as_dict(self) -> dict:
        return {"status": "ok" if self.usable else "rejected", "code": self.code, "message": self.message}


OK = Decision(True)
MESSAGES = {
    "not_mr": "The DICOM file's modality is {modality}, not MR: BrainScan assesses brain MRI only.",
    "colour": "The image is in colour; an MRI slice is gray (it may be a photograph, or a screenshot with "
              "coloured marks).",
    "too_small": "The image is only {width} x {height} pixels; at least {side} x {side} is needed to assess it.",
    "empty": "The image is empty or uniform: there is no head in it.",
    "noise": "The image looks like noise, not like an MRI slice.",
    "too_little_head": "Too little of a head is in the image ({share:.0%} of it) to assess it.",
    "not_brain_mri": "This does not look like a brain MRI slice (it may be a photo, a document, another "
                     "modality or body part, or only part of a slice).",
}


def refuse(code: str, score: float | None = None, **values) -> Decision:
    return Decision(False, code, MESSAGES[code].format(**values), score)


def roughness(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference of horizontal neighbours inside `mask`, over the standard deviation there:
    about 1.1 for white noise, 0.3 for an MRI slice."""
    pairs = mask[:, 1:] & mask[:, :-1]
    if pairs.sum() < 50:
        return 0.0
    spread = float(values[mask].std())
    return float(np.abs(np.diff(values, axis=1))[pairs].mean() / spread) if spread > 0 else 0.0


def check_statistics(prepared: Prepared, shape: tuple[int, int], modality: str = "") -> Decision:
    """Rules 1-3 of the module docstring."""
    if modality == PHOTOGRAPH:
        return refuse("colour")
    if modality and modality.strip().upper() != "MR":
        return refuse("not_mr", modality=modality.strip().upper())
    height, width = shape
    if min(height, width) < MIN_ASSESSABLE_SIDE:
        return refuse("too_small", width=width, height=height, side=MIN_ASSESSABLE_SIDE)
    work = prepared.work
    if float(work.std()) < UNIFORM_STD:
        return refuse("empty")
    if prepared.head_fraction == 0:
        everywhere = np.ones(work.shape, bool)
        return refuse("noise") if roughness(work, everywhere) > NOISE_ROUGHNESS else refuse("empty")
    if roughness(prepared.tensor[..., 0], prepared.head) > NOISE_ROUGHNESS:
        return refuse("noise")
    if prepared.head_fraction < MIN_HEAD_SHARE:
        return refuse("too_little_head", share=prepared.head_fraction)
    return OK


def gate_input(prepared: Prepared) -> np.ndarray:
    """(GATE_SIZE, GATE_SIZE, 2): the whole image (padded square, percentile-scaled) and the head crop."""
    work = prepared.work
    side = max(work.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - work.shape[0]) // 2, (side - work.shape[1]) // 2
    square[top:top + work.shape[0], left:left + work.shape[1]] = work
    whole = resize(square, GATE_SIZE)
    low, high = np.percentile(whole, (1, 99))
    whole = np.clip((whole - low) / (high - low), 0, 1) if high > low else np.zeros_like(whole)
    crop = resize(prepared.tensor[..., 0], GATE_SIZE)
    return np.stack([whole, crop], axis=-1).astype(np.float32)


class Gate:
    """The whole gate: the rules, then the learned check (an ONNX graph of the model version)."""

    def __init__(self, onnx_path: Path | str, threshold: float, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.threshold = threshold

    def scores(self, prepared: list[Prepared]) -> np.ndarray:
        batch = np.stack([gate_input(p) for p in prepared])
        return self.session.run(None, {self.input_name: batch})[0].reshape(-1)

    def check(self, prepared: list[Prepared], shapes: list[tuple[int, int]],
              modalities: list[str] | None = None) -> list[Decision]:
        modalities = modalities or [""] * len(prepared)
        decisions = [check_statistics(p, shape, modality) for p, shape, modality in zip(prepared, shapes, modalities)]
        scores = self.scores(prepared)
        return [decision if not decision.usable else
                Decision(True, score=float(score)) if score >= self.threshold else refuse("not_brain_mri", float(score))
                for decision, score in zip(decisions, scores)]
