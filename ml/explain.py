"""The evidence map over the slice, and how well it points at the lesion.

The network's map holds, per 4 x 4 patch of its input, the calibrated probability that the patch
holds tumor (ml.model); it was trained against tumor masks, so it is near 0 over normal tissue and
near 1 over a lesion, and it is shown as it is: no rescaling to its own maximum, so a slice without
a lesion stays dark instead of lighting up its least normal corner.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from ml.preprocess import Prepared, resize

# Anchor colours of the overlay (transparent-ish yellow through orange to red).
_ANCHORS = np.array([[255, 255, 178], [254, 204, 92], [253, 141, 60], [240, 59, 32], [189, 0, 38]], np.float32)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
                 for c in range(3)], axis=1).astype(np.uint8)
MAX_ALPHA = 0.85
# Opacity of each palette entry: grows like the square root of the evidence, so faint evidence still shows.
_ALPHA = np.rint(np.sqrt(np.linspace(0, 1, 256)) * MAX_ALPHA * 255).astype(np.uint8)
POINTING_TOLERANCE_PX = 8  # the pointing game's allowance around the lesion, in the image's own pixels


def over_head(evidence: np.ndarray, prepared: Prepared) -> np.ndarray:
    """The map (h, w) placed over the slice at working size, kept to the head (no evidence over the air)."""
    size = prepared.head.shape[0]
    inside = resize(evidence.astype(np.float32), size) * prepared.head
    box = prepared.box
    height, width = prepared.work.shape
    upsampled = resize(inside, box.side)
    canvas = np.zeros((height, width), np.float32)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.top + box.side, height), min(box.left + box.side, width)
    if bottom > top and right > left:
        canvas[top:bottom, left:right] = upsampled[top - box.top:bottom - box.top, left - box.left:right - box.left]
    return np.clip(canvas, 0.0, 1.0)


def heatmap_png(heat: np.ndarray) -> bytes:
    """A PNG whose colour and opacity grow with the evidence; laid over the scan by the page.

    A palette image (one byte per pixel, with an opacity per palette entry) rather than RGBA: a fifth of
    the encoding time and a quarter of the bytes. Opacity follows the rounded evidence, so it differs
    from RGBA's by at most 10/255, in the faintest cells.
    """
    index = np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)
    image = Image.frombytes("P", index.shape[::-1], index.tobytes())
    image.putpalette(_LUT.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, transparency=_ALPHA.tobytes())
    return buffer.getvalue()


def mask_on(heat: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The lesion mask on the heatmap's grid, and the heatmap's pixels per mask pixel along a side."""
    scale = heat.shape[0] / mask.shape[0]
    if mask.shape != heat.shape:
        mask = resize(mask.astype(np.float32), heat.shape[::-1]) >= 0.5
    return mask.astype(bool), scale


def pointing_hit(heat: np.ndarray, mask: np.ndarray, tolerance_px: float = POINTING_TOLERANCE_PX) -> bool:
    """Whether the map's peak lies on the lesion, dilated by `tolerance_px` pixels of the mask's image."""
    lesion, scale = mask_on(heat, mask)
    radius = max(1, int(round(tolerance_px * scale)))
    structure = ndimage.generate_binary_structure(2, 1)
    dilated = ndimage.binary_dilation(lesion, structure, iterations=radius)
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(dilated[peak])


def mass_in_mask(heat: np.ndarray, mask: np.ndarray) -> float:
    """The share of the map's total evidence that lies on the lesion (nan for an all-zero map)."""
    lesion, _ = mask_on(heat, mask)
    total = float(heat.sum())
    return float(heat[lesion].sum() / total) if total > 0 else float("nan")
