"""Acquisition-shift augmentation: what another scanner, protocol or export does to a slice.

Applied to the whole source slice, air included, before the one preprocess (ml.preprocess), so the
network learns from exactly what serving would hand it for such a slice: the head mask, crop and
standardisation have to cope with the noise, the bias field or the border too. A tumor mask goes
through the same geometry. Every draw comes from the generator passed in, so a seed fixes it.

The families: mirror, rotation, zoom and shift; field of view and borders (a cut head, a raised
background, a frame); bias field; gamma and windowing; blur and down-sampling; Rician noise.
The stress suite (ml.stress) uses other families, so it measures robustness to shifts not trained on.

A transplant (off by default) is not an acquisition shift: it moves a lesion, with its mask, from one
patient's slice into another patient's no-tumor slice of the same sequence, so that the only thing
telling the two slices apart is the lesion itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ml.preprocess import HEAD_PERCENTILES, head_mask, resize

MIN_LESION_INSIDE = 0.9  # a transplanted lesion must lie this much inside the recipient's head


def geometry(gray: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
    """Mirror, rotate (up to 12 degrees), zoom (0.85-1.15) and shift (6%) the slice and its mask alike."""
    height, width = gray.shape
    if rng.random() < 0.5:
        gray = gray[:, ::-1]
        mask = mask[:, ::-1] if mask is not None else None
    angle = np.deg2rad(rng.uniform(-12, 12))
    zoom = rng.uniform(0.85, 1.15)
    shift = rng.uniform(-0.06, 0.06, 2) * (height, width)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
    centre = np.array([height, width]) / 2
    offset = centre - rotation @ (centre + shift)
    gray = ndimage.affine_transform(np.ascontiguousarray(gray), rotation, offset, order=1, mode="constant")
    if mask is not None:
        mask = ndimage.affine_transform(np.ascontiguousarray(mask, dtype=np.float32), rotation, offset, order=1,
                                        mode="constant")
    return gray, mask


def field_of_view(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A raised or textured background, or a frame along the edges."""
    out = gray.copy()
    if rng.random() < 0.5:  # a background that is not black: every level lifted by an offset
        lift = rng.uniform(0.02, 0.3)
        out = out * (1 - lift) + lift
    else:  # a frame on one to four sides, dark or bright, as exports and screenshots leave them
        band = max(1, int(rng.uniform(0.01, 0.08) * min(out.shape)))
        level = rng.choice([0.0, 1.0, rng.uniform(0.2, 0.8)])
        for side in np.flatnonzero(rng.random(4) < 0.6):
            index = [(slice(0, band), slice(None)), (slice(-band, None), slice(None)),
                     (slice(None), slice(0, band)), (slice(None), slice(-band, None))][side]
            out[index] = level
    return out


def bias_field(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative shading, as a receive coil gives (up to about +-40%)."""
    coarse = rng.normal(0, rng.uniform(0.1, 0.35), (4, 4)).astype(np.float32)
    return gray * np.exp(resize(coarse, gray.shape[::-1]))


def gamma_and_window(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another contrast curve, then possibly another display window (clipping the darkest or brightest)."""
    out = np.power(np.clip(gray, 0.0, None), np.exp(rng.uniform(-0.4, 0.4)))
    if rng.random() < 0.5:
        low, high = rng.uniform(0.0, 0.1), rng.uniform(0.6, 1.0)
        out = np.clip((out - low) / (high - low), 0.0, 1.0)
    return out


def blur_or_downsample(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thicker slices or a smaller matrix: Gaussian blur, or down-sampling and back."""
    if rng.random() < 0.5:
        return ndimage.gaussian_filter(gray, rng.uniform(0.3, 1.2))
    height, width = gray.shape
    factor = rng.uniform(1.5, 3.0)
    small = resize(gray, (max(8, int(width / factor)), max(8, int(height / factor))))
    return resize(small, (width, height))


def rician_noise(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Magnitude-image noise: |signal + complex Gaussian noise|, everywhere, air included."""
    sigma = rng.uniform(0.005, 0.05)
    real = gray + rng.normal(0, sigma, gray.shape)
    imaginary = rng.normal(0, sigma, gray.shape)
    return np.sqrt(real**2 + imaginary**2)


def augment(gray: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
    """One random acquisition of the slice: (gray in [0, 1] float32, mask in [0, 1] or None)."""
    gray, mask = geometry(gray.astype(np.float32), mask, rng)
    for transform, rate in ((bias_field, 0.5), (gamma_and_window, 0.5), (blur_or_downsample, 0.3),
                            (field_of_view, 0.25), (rician_noise, 0.5)):
        if rng.random() < rate:
            gray = transform(gray, rng)
    return np.clip(gray, 0.0, 1.0).astype(np.float32), mask


def transplant(gray: np.ndarray, donor: np.ndarray, donor_mask: np.ndarray, rng: np.random.Generator):
    """The donor's lesion set into `gray` where it lay in the donor (mirrored half the time), its intensities
    carried over head to head by the heads' percentiles, its edge feathered over a pixel or two.
    Returns (image, lesion mask in [0, 1]), or None where the lesion would not lie inside the head."""
    if donor.shape != gray.shape:
        donor = resize(donor, gray.shape[::-1])
        donor_mask = resize(donor_mask.astype(np.float32), gray.shape[::-1])
    lesion = donor_mask > 0.5
    if rng.random() < 0.5:
        donor, lesion = donor[:, ::-1], lesion[:, ::-1]
    head, donor_head = head_mask(gray), head_mask(donor)
    if not lesion.any() or not donor_head.any() or np.mean(head[lesion]) < MIN_LESION_INSIDE:
        return None
    low, high = np.percentile(gray[head], HEAD_PERCENTILES)
    donor_low, donor_high = np.percentile(donor[donor_head], HEAD_PERCENTILES)
    carried = low + (donor - donor_low) * (high - low) / max(donor_high - donor_low, 1e-6)
    blend = np.clip(ndimage.gaussian_filter(ndimage.binary_dilation(lesion).astype(np.float32), 1.0), 0.0, 1.0)
    image = gray * (1 - blend) + np.clip(carried, 0.0, 1.0) * blend
    return image.astype(np.float32), (lesion & head).astype(np.float32)


def empty_slice(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """An image with no head in it: black, one grey level, noise or a smooth cloud. Taught as no tumor,
    so that an empty image never scores as one."""
    kind = rng.integers(4)
    if kind == 0:
        return np.zeros((size, size), np.float32)
    if kind == 1:
        return np.full((size, size), rng.uniform(0.05, 1.0), np.float32)
    if kind == 2:
        return rician_noise(np.full((size, size), rng.uniform(0.0, 0.3), np.float32), rng).clip(0, 1).astype(np.float32)
    coarse = rng.random((rng.integers(2, 9),) * 2).astype(np.float32)
    return resize(coarse, size).clip(0, 1)

