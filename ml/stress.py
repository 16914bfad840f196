"""The stress suite: the clean test slices again, under acquisition shifts that training never used.

Training augments with mirror, rotation, zoom, borders, bias field, gamma and windowing, blur and
down-sampling, and Rician noise (ml.augment). Each family here is something else a slice meets on
its way from a scanner to BrainScan, at one fixed, clearly visible strength:

- jpeg: lossy re-compression at quality 20, as a screenshot or a web export does;
- ghosting: motion ghosts, faint copies of the head shifted along the phase-encoding axis;
- gibbs: ringing at edges from a truncated k-space (the inner 40% of frequencies kept);
- spikes: 1% of pixels stuck at black or white (dead and hot pixels, a broken export);
- sharpening: a scanner's edge enhancement (unsharp masking, amount 1.5);
- white_background: the air painted white, as some viewers and atlases show slices;
- stripes: a herringbone of fine stripes over the whole image (an RF spike in k-space).

Blank and uniform images are checked apart: none may be labelled tumor.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from ml.imaging import downsize
from ml.preprocess import head_mask, resize


def jpeg(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=20)
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255.0


def ghosting(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = gray.shape[0] // 4
    return gray + 0.12 * (np.roll(gray, shift, axis=0) + np.roll(gray, -shift, axis=0))


def gibbs(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.fftshift(np.fft.fft2(gray))
    height, width = gray.shape
    keep = np.zeros_like(spectrum, dtype=bool)
    h, w = int(height * 0.2), int(width * 0.2)
    keep[height // 2 - h:height // 2 + h, width // 2 - w:width // 2 + w] = True
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum * keep)))


def spikes(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = gray.copy()
    stuck = rng.random(gray.shape) < 0.01
    out[stuck] = rng.integers(0, 2, int(stuck.sum()))
    return out


def sharpening(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return gray + 1.5 * (gray - ndimage.gaussian_filter(gray, 1.5))


def white_background(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    head = resize(head_mask(downsize(gray, 128)).astype(np.float32), gray.shape[::-1]) > 0.5
    return np.where(head, gray, 1.0)


def stripes(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.mgrid[0:gray.shape[0], 0:gray.shape[1]]
    return gray + 0.06 * np.sin(2 * np.pi * (rows + cols) / 6.0)


FAMILIES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "jpeg": jpeg, "ghosting": ghosting, "gibbs": gibbs, "spikes": spikes, "sharpening": sharpening,
    "white_background": white_background, "stripes": stripes,
}


def perturb(gray: np.ndarray, family: str, seed: int = 0) -> np.ndarray:
    """The slice under one stress family, back in [0, 1]."""
    return np.clip(FAMILIES[family](gray.astype(np.float32), np.random.default_rng(seed)), 0.0, 1.0).astype(np.float32)


def empty_images(size: int = 224) -> dict[str, np.ndarray]:
    """Images with nothing to assess; none may be labelled tumor."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    return {
        "black": np.zeros((size, size), np.float32),
        "white": np.ones((size, size), np.float32),
        "mid_grey": np.full((size, size), 0.5, np.float32),
        "dark_grey": np.full((size, size), 0.1, np.float32),
        "gradient": rows.astype(np.float32),
        "diagonal_gradient": ((rows + cols) / 2).astype(np.float32),
        "noise": np.random.default_rng(0).random((size, size)).astype(np.float32),
    }
