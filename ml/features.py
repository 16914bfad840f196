"""The 13 texture features of the original study, computed on the preprocessed slice.

First-order statistics are taken over the head (pixels above the background floor); the
co-occurrence features use scikit-image's grey-level co-occurrence matrix (GLCM) of the slice
quantised to `LEVELS` grey levels, at distance 1, averaged over 0, 45, 90 and 135 degrees;
coarseness is Tamura's. Computing them on the preprocessed image (cropped to the head, fixed
size, intensity-scaled) makes them comparable between scans of different sizes and scanners.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter
from skimage.feature import graycomatrix, graycoprops

LEVELS = 64
HEAD_FLOOR = 0.02
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
COARSENESS_SCALES = 5

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "mean": "Average brightness of the head. Shifts when a large bright or dark region is present.",
    "variance": "How widely brightness varies across the head (squared units).",
    "std": "Standard deviation of brightness: the same spread as variance, in brightness units.",
    "skewness": "Asymmetry of the brightness histogram; positive when a few very bright areas stand out.",
    "kurtosis": "How heavy the histogram's tails are; high when small regions are much brighter or darker "
                "than the rest (excess kurtosis, 0 for a normal distribution).",
    "contrast": "Local intensity differences between neighbouring pixels; high for sharp, busy texture.",
    "energy": "Uniformity of texture (square root of ASM); high when a few grey-level pairs dominate.",
    "asm": "Angular second moment: the sum of squared co-occurrence probabilities, high for orderly texture.",
    "entropy": "Disorder of texture: how unpredictable a pixel's neighbour is (in bits).",
    "homogeneity": "Closeness of neighbouring grey levels; high for smooth tissue.",
    "dissimilarity": "Average absolute grey-level difference between neighbours; like contrast, but linear.",
    "correlation": "How linearly a pixel's grey level predicts its neighbour's; high for smooth gradients.",
    "coarseness": "Tamura coarseness: the typical size, in pixels, of texture elements; large for "
                  "big uniform patches.",
}
FEATURE_NAMES = tuple(FEATURE_DESCRIPTIONS)


def first_order(image: np.ndarray) -> dict[str, float]:
    values = image[image > HEAD_FLOOR]
    if values.size < 2:
        values = image.ravel()
    mean, std = float(values.mean()), float(values.std())
    centred = values - mean
    skewness = float((centred**3).mean() / std**3) if std > 0 else 0.0
    kurtosis = float((centred**4).mean() / std**4 - 3.0) if std > 0 else 0.0
    return {"mean": mean, "variance": std**2, "std": std, "skewness": skewness, "kurtosis": kurtosis}


def cooccurrence(image: np.ndarray) -> dict[str, float]:
    quantised = np.clip((image * LEVELS).astype(np.uint8), 0, LEVELS - 1)
    glcm = graycomatrix(quantised, distances=[1], angles=ANGLES, levels=LEVELS, symmetric=True, normed=True)
    props = {name: float(graycoprops(glcm, prop).mean()) for name, prop in (
        ("contrast", "contrast"), ("energy", "energy"), ("asm", "ASM"), ("homogeneity", "homogeneity"),
        ("dissimilarity", "dissimilarity"), ("correlation", "correlation"),
    )}
    probabilities = glcm[:, :, 0, :]
    nonzero = np.where(probabilities > 0, probabilities, 1.0)
    props["entropy"] = float((-(probabilities * np.log2(nonzero)).sum(axis=(0, 1))).mean())
    if not np.isfinite(props["correlation"]):
        props["correlation"] = 1.0  # a flat image: every neighbour equals its pixel
    return props


def coarseness(image: np.ndarray, scales: int = COARSENESS_SCALES) -> float:
    """Tamura coarseness: per pixel, the window 2^k whose neighbours' averages differ most."""
    best_energy = np.full(image.shape, -1.0)
    best_size = np.ones(image.shape)
    for k in range(1, scales + 1):
        window = 2**k
        average = uniform_filter(image.astype(np.float64), size=window, mode="reflect")
        half = window // 2
        horizontal = np.abs(np.roll(average, -half, axis=1) - np.roll(average, half, axis=1))
        vertical = np.abs(np.roll(average, -half, axis=0) - np.roll(average, half, axis=0))
        energy = np.maximum(horizontal, vertical)
        better = energy > best_energy
        best_energy[better] = energy[better]
        best_size[better] = window
    return float(best_size.mean())


def texture_features(image: np.ndarray) -> dict[str, float]:
    """All 13 features, in FEATURE_NAMES order, of a preprocessed (h, w) or (h, w, 1) image in [0, 1]."""
    image = np.asarray(image, dtype=np.float32).squeeze()
    values = {**first_order(image), **cooccurrence(image), "coarseness": coarseness(image)}
    return {name: values[name] for name in FEATURE_NAMES}


def feature_matrix(images: np.ndarray) -> np.ndarray:
    """(n, h, w, 1) -> (n, 13)."""
    return np.array([[row[name] for name in FEATURE_NAMES] for row in map(texture_features, images)], np.float64)
