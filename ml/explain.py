"""Turn the network's class activation map into a heatmap over the source image.

For this architecture (global average pooling, then one dense layer) the class activation map is
Grad-CAM: each cell holds the tumor logit the network would give if the whole slice looked like
that cell. `tanh(logit / 2)`, clipped at zero, maps it to the local tumor evidence in [0, 1]:
0 where a cell argues for no tumor, near 1 where it argues strongly for one. Unlike a map
rescaled to its own maximum, a scan without a lesion stays dark instead of lighting up its
least-normal corner.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ml.preprocess import BRIGHT_PERCENTILE, HEAD_THRESHOLD, Box, resize

# Anchor colours of the overlay (transparent-ish yellow through orange to red).
_ANCHORS = np.array([[255, 255, 178], [254, 204, 92], [253, 141, 60], [240, 59, 32], [189, 0, 38]], np.float32)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
                 for c in range(3)], axis=1).astype(np.uint8)
MAX_ALPHA = 0.85


def evidence(cam_logits: np.ndarray) -> np.ndarray:
    """Cell logits (h, w) -> local tumor evidence in [0, 1]."""
    return np.clip(np.tanh(cam_logits / 2.0), 0.0, 1.0).astype(np.float32)


def over_head(cells: np.ndarray, box: Box, gray: np.ndarray) -> np.ndarray:
    """The evidence map in the source image's coordinates, kept to the head.

    The network's cells also cover the air around the head (the crop is square); evidence drawn
    there would only distract, so pixels darker than the head threshold are cleared.
    """
    head = gray > HEAD_THRESHOLD * np.percentile(gray, BRIGHT_PERCENTILE)
    return to_source(cells, box, gray.shape) * head


def to_source(cells: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Upsample a map over the head box and place it on a canvas the size of the source image."""
    height, width = shape
    upsampled = resize(cells, box.side)
    canvas = np.zeros(shape, np.float32)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.top + box.side, height), min(box.left + box.side, width)
    canvas[top:bottom, left:right] = upsampled[top - box.top:bottom - box.top, left - box.left:right - box.left]
    return np.clip(canvas, 0.0, 1.0)


def heatmap_png(heat: np.ndarray) -> bytes:
    """An RGBA PNG whose colour and opacity grow with the evidence; laid over the scan by the page."""
    index = np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)
    rgba = np.empty(heat.shape + (4,), np.uint8)
    rgba[..., :3] = _LUT[index]
    rgba[..., 3] = np.rint(np.sqrt(heat) * MAX_ALPHA * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
