"""Synthetic brain-like slices, with or without a tumor-like lesion, deterministic by seed.

Each phantom is an elliptical head: a bright skull ring, textured brain tissue with darker
ventricles, on a black background, at a random size, angle and contrast. A lesion is a
heterogeneous blob with a bright enhancing rim somewhere in the brain. Used by fast tests and to
train a demo model when no real data is at hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _ellipse(rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float], radii: tuple[float, float],
             angle: float) -> np.ndarray:
    """Normalised elliptical radius: < 1 inside the ellipse."""
    dy, dx = rows - centre[0], cols - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    return np.sqrt((u / radii[1]) ** 2 + (v / radii[0]) ** 2)


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    coarse = rng.normal(size=(max(2, size // scale),) * 2).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))


def make_phantom(seed: int, tumor: bool, size: int = 224) -> np.ndarray:
    """One slice as a (size, size) float32 array in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size / 2 + rng.uniform(-0.05, 0.05) * size, size / 2 + rng.uniform(-0.05, 0.05) * size)
    radii = (size * rng.uniform(0.36, 0.44), size * rng.uniform(0.28, 0.36))
    angle = rng.uniform(-0.3, 0.3)
    head = _ellipse(rows, cols, centre, radii, angle)
    brain_level, skull_level = rng.uniform(0.35, 0.6), rng.uniform(0.7, 1.0)
    image = np.zeros((size, size), np.float32)
    image[head < 1.0] = skull_level
    brain = head < 0.88
    texture = 0.06 * _smooth_noise(rng, size, 8) + 0.03 * _smooth_noise(rng, size, 3)
    image[brain] = brain_level + texture[brain]
    for side in (-1, 1):  # lateral ventricles
        ventricle = _ellipse(rows, cols, (centre[0] - 0.05 * size, centre[1] + side * 0.07 * size),
                             (0.12 * size, 0.035 * size), angle + side * 0.25)
        image[ventricle < 1.0] = brain_level * rng.uniform(0.2, 0.45)
    if tumor:
        image = _add_lesion(image, rng, rows, cols, centre, radii, angle, brain_level, size)
    image += rng.normal(0, 0.015, image.shape).astype(np.float32) * (head < 1.0)
    return np.clip(image, 0.0, 1.0)


def _add_lesion(image, rng, rows, cols, centre, radii, angle, brain_level, size):
    distance, direction = rng.uniform(0.1, 0.55), rng.uniform(0, 2 * np.pi)
    lesion_centre = (centre[0] + distance * radii[0] * np.sin(direction),
                     centre[1] + distance * radii[1] * np.cos(direction))
    lesion_radius = size * rng.uniform(0.06, 0.13)
    lesion = _ellipse(rows, cols, lesion_centre, (lesion_radius, lesion_radius * rng.uniform(0.7, 1.3)),
                      rng.uniform(0, np.pi))
    core = lesion < 0.75
    rim = (lesion >= 0.75) & (lesion < 1.0)
    oedema = (lesion >= 1.0) & (lesion < 1.5)
    out = image.copy()
    out[oedema] = out[oedema] * 0.85 + 0.08
    out[core] = brain_level * rng.uniform(0.5, 0.9) + 0.08 * _smooth_noise(rng, size, 4)[core]
    out[rim] = min(1.0, brain_level * rng.uniform(1.5, 2.0))
    return out


def write_phantom_folder(root: str | Path, per_class: int, seed: int = 0, size: int = 224) -> Path:
    """Write root/tumor/*.png and root/notumor/*.png, the layout `ml.data` reads."""
    root = Path(root)
    for tumor, folder in ((True, "tumor"), (False, "notumor")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = np.rint(make_phantom(seed * 100_003 + index * 2 + tumor, tumor, size) * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / folder / f"phantom-{seed}-{index:05d}.png")
    return root
