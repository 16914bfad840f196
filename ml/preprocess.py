"""The one preprocessing function shared by training, evaluation and serving.

grayscale [0, 1] slice -> crop to the head -> pad to a square -> resize -> scale intensities so
that the brightest tissue is 1. Per-image standardisation happens inside the network (see
`ml.model.PerImageStandardization`) so that intensity augmentation is applied before it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

IMAGE_SIZE = 128
HEAD_THRESHOLD = 0.08  # fraction of the slice's bright level; below it is air or coil noise
MARGIN = 0.04  # fraction of the box side kept around the head
BRIGHT_PERCENTILE = 99.5


class Box(NamedTuple):
    """A square region of the source image, in source pixels; may extend past the edges."""

    top: int
    left: int
    side: int


def head_box(gray: np.ndarray) -> Box:
    """The smallest square around the pixels brighter than the background, with a margin."""
    height, width = gray.shape
    bright = np.percentile(gray, BRIGHT_PERCENTILE)
    mask = gray > HEAD_THRESHOLD * bright if bright > 0 else np.zeros_like(gray, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size < 2 or cols.size < 2:
        return Box(top=(height - max(height, width)) // 2, left=(width - max(height, width)) // 2,
                   side=max(height, width))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = int(round(max(bottom - top, right - left) * (1 + 2 * MARGIN)))
    centre_row, centre_col = (top + bottom) // 2, (left + right) // 2
    return Box(top=int(centre_row - side // 2), left=int(centre_col - side // 2), side=side)


def crop_square(gray: np.ndarray, box: Box) -> np.ndarray:
    """Cut `box` out of the image, padding with black where it extends past the edges."""
    height, width = gray.shape
    out = np.zeros((box.side, box.side), dtype=np.float32)
    src_top, src_left = max(box.top, 0), max(box.left, 0)
    src_bottom, src_right = min(box.top + box.side, height), min(box.left + box.side, width)
    out[src_top - box.top:src_bottom - box.top, src_left - box.left:src_right - box.left] = (
        gray[src_top:src_bottom, src_left:src_right]
    )
    return out


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Antialiased resize of a float image to size x size."""
    return np.asarray(Image.fromarray(gray.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def preprocess(gray: np.ndarray, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Box]:
    """Return the network input (size, size, 1) float32 in [0, 1] and the head box it came from."""
    if gray.ndim != 2:
        raise ValueError(f"preprocess expects a 2-D grayscale array, got shape {gray.shape}")
    box = head_box(gray)
    square = resize(crop_square(gray, box), size)
    bright = np.percentile(square, BRIGHT_PERCENTILE)
    scaled = np.clip(square / bright, 0.0, 1.0) if bright > 0 else np.zeros_like(square)
    return scaled.astype(np.float32)[..., np.newaxis], box
