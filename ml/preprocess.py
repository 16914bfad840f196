"""The one preprocessing function shared by training, evaluation, the CLI and the worker.

    grayscale slice (any size) -> working copy of at most WORK_SIDE pixels -> head mask (smoothed
    Otsu on the distance from the background level, largest component, holes filled) -> air set to
    zero -> square crop around the head -> IMAGE_SIZE x IMAGE_SIZE -> intensities standardised by
    percentiles of the head (or of its interior, where a model was trained so).

Every allocation is bounded by WORK_SIDE, whatever the input's size or shape: a slice of 390,625 x
64 pixels costs no more than one of 256 x 256. The head is found from the background level of the
image's border, so a black, a noisy or a white background give the same head; intensities are
standardised on the head only, so neither the air nor a scanner's brightness moves them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from ml.imaging import downsize

IMAGE_SIZE = 128
MAP_STRIDE = 4  # the network's evidence map has one cell per 4 x 4 input pixels (32 x 32 at 128)
WORK_SIDE = 256  # cropping runs on a copy at most this large
MASK_SIDE = 128  # the head is found on a smaller copy still: a head is large, and this keeps it under 2 ms
SMOOTH_SIGMA = 1.0  # mask pixels; enough to silence pixel noise before thresholding
BORDER = 0.04  # share of each side read as the background ring
RING_BINS = 32
MIN_CONTRAST = 0.03  # below this head-to-background difference the image holds no head
FLOOR = 0.06  # the head threshold is at least this share of the head's contrast (scale-free)
NOISE_MULTIPLE = 6.0  # the head differs from the air by more than this many noise deviations
OPENING = 2  # iterations of the opening (by a 3 x 3 cross) that cuts thin bridges off the head
MIN_HEAD_SHARE = 0.01  # a "head" smaller than this share of the image is noise
MARGIN = 0.05  # share of the crop's side kept around the head
HEAD_PERCENTILES = (1.0, 99.0)
# Which pixels the percentiles are read from. "head": the whole mask, as every release was trained.
# "interior": the mask eroded by INTERIOR_EROSION pixels, so that a white air mixed into the head's edge by the
# resize does not lift the 99th percentile and darken the head; tried as a recipe and not chosen on validation
# (docs/model.md). "ranks": each head pixel becomes the share of the head darker than it, so any monotone
# change of contrast (gamma, window, another scanner's curve) leaves the input as it was.
# A model's card names its reference (none named: "head"), and the predictor uses it.
INTENSITY_REFERENCES = ("head", "interior", "ranks")
INTENSITY_REFERENCE = "head"
UNRECORDED_REFERENCE = "head"  # what cards from before the setting were trained with
INTERIOR_EROSION = 2
# The head's 99th percentile maps to this value, not 1, so brighter structure (a FLAIR lesion can be the
# brightest tissue of a slice) keeps its contrast instead of being clipped.
BRIGHT_LEVEL = 0.75


def recorded_reference(hyperparameters) -> str:
    """The intensity reference a card's hyperparameters name."""
    return hyperparameters.get("intensity_reference", UNRECORDED_REFERENCE)


class Box(NamedTuple):
    """A square region of the working image, in working pixels; may extend past the edges."""

    top: int
    left: int
    side: int


class Prepared(NamedTuple):
    tensor: np.ndarray  # (IMAGE_SIZE, IMAGE_SIZE, 1) float32 in [0, 1]: the network's input
    head: np.ndarray  # (IMAGE_SIZE, IMAGE_SIZE) bool: the head mask over the tensor
    work: np.ndarray  # (h, w) float32: the slice at working size (longest side <= WORK_SIDE)
    box: Box  # where the tensor was cut from `work`
    head_fraction: float  # share of the slice covered by the head


def background_level(image: np.ndarray) -> tuple[float, float]:
    """The most common level of the ring along the image's border (the air, whatever its brightness),
    and its noise (1.4826 x the median absolute deviation of the ring pixels near that level).

    The mode rather than the median: a frame along some edges must not pass for the background.
    """
    height, width = image.shape
    band = max(1, int(round(BORDER * min(height, width))))
    ring = np.concatenate([image[:band].ravel(), image[-band:].ravel(), image[:, :band].ravel(),
                           image[:, -band:].ravel()]).astype(np.float64)
    low, high = float(ring.min()), float(ring.max())
    counts, edges = np.histogram(ring, bins=RING_BINS, range=(low, max(high, low + 1e-3)))
    peak = int(np.argmax(counts))
    near = ring[(ring >= edges[max(peak - 1, 0)]) & (ring <= edges[min(peak + 2, RING_BINS)])]
    level = float(np.median(near))
    return level, float(1.4826 * np.median(np.abs(near - level)))


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of an array (maximises the between-class variance of its histogram)."""
    low, high = float(values.min()), float(values.max())
    step = max(high - low, 1e-12) / bins
    counts = np.bincount(np.minimum(((values.ravel() - low) / step).astype(np.int64), bins - 1), minlength=bins)
    centres = low + (np.arange(bins) + 0.5) * step
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(counts * centres) / np.maximum(weight_low, 1)
    mean_high = ((counts * centres).sum() - np.cumsum(counts * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


def head_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the head in a (working-size) slice; empty when the slice holds no head.

    The threshold on the distance from the background level is Otsu's, but never higher than a few
    times the background's own noise (a dim head on a lifted background must not lose its darker
    half) nor lower than a share of the head's contrast (so that it scales with the image). An opening
    cuts thin bridges (a frame, a line of text) before the largest component is kept.
    """
    smooth = ndimage.gaussian_filter(image, SMOOTH_SIGMA, mode="nearest")
    level, spread = background_level(smooth)
    distance = np.abs(smooth - level)
    contrast = float(np.percentile(distance, 99.5))
    if contrast < MIN_CONTRAST:
        return np.zeros(image.shape, bool)
    threshold = max(FLOOR * contrast, min(otsu_threshold(distance), NOISE_MULTIPLE * spread))
    foreground = open_cross(distance > threshold, OPENING)
    labels, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    if largest.mean() < MIN_HEAD_SHARE:
        return np.zeros(image.shape, bool)
    return fill_holes(largest)


def erode_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """scipy's binary_erosion(mask, iterations=...) with its default 3 x 3 cross and zero border, by shifted
    slices instead of a generic structuring loop."""
    for _ in range(iterations):
        eroded = mask.copy()
        eroded[1:] &= mask[:-1]
        eroded[:-1] &= mask[1:]
        eroded[:, 1:] &= mask[:, :-1]
        eroded[:, :-1] &= mask[:, 1:]
        eroded[0] = eroded[-1] = False  # outside the image counts as background
        eroded[:, 0] = eroded[:, -1] = False
        mask = eroded
    return mask


def open_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """scipy's binary_opening(mask, iterations=...) with its default 3 x 3 cross: the same pixels in a
    seventh of the time."""
    mask = erode_cross(mask, iterations)
    for _ in range(iterations):
        dilated = mask.copy()
        dilated[1:] |= mask[:-1]
        dilated[:-1] |= mask[1:]
        dilated[:, 1:] |= mask[:, :-1]
        dilated[:, :-1] |= mask[:, 1:]
        mask = dilated
    return mask


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """scipy's binary_fill_holes, by labelling instead of iterated dilation (under half the time): a hole
    is a 4-connected background region that does not touch the image's edge."""
    background, count = ndimage.label(~mask)
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    open_to_edge = np.zeros(count + 1, bool)
    open_to_edge[edge] = True
    return mask | ~open_to_edge[background]


def head_box(mask: np.ndarray) -> Box:
    """The smallest square around the mask, with a margin; the whole image when the mask is empty."""
    height, width = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size < 2 or cols.size < 2:
        side = max(height, width)
        return Box(top=(height - side) // 2, left=(width - side) // 2, side=side)
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(2, int(round(max(bottom - top, right - left) * (1 + 2 * MARGIN))))
    return Box(top=int((top + bottom) // 2 - side // 2), left=int((left + right) // 2 - side // 2), side=side)


def scaled_box(box: Box, factor: float) -> Box:
    """The same square on an image `factor` times larger."""
    if factor == 1:
        return box
    return Box(top=int(round(box.top * factor)), left=int(round(box.left * factor)),
               side=max(2, int(round(box.side * factor))))


def crop_square(image: np.ndarray, box: Box) -> np.ndarray:
    """Cut `box` out of the image, padding with zero (air) where it extends past the edges."""
    height, width = image.shape
    out = np.zeros((box.side, box.side), dtype=np.float32)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.top + box.side, height), min(box.left + box.side, width)
    if bottom > top and right > left:
        out[top - box.top:bottom - box.top, left - box.left:right - box.left] = image[top:bottom, left:right]
    return out


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a float image to size x size (or (width, height))."""
    target = (size, size) if isinstance(size, int) else size
    return np.asarray(Image.fromarray(image.astype(np.float32, copy=False), mode="F").resize(target, Image.BILINEAR))


def standardise(values: np.ndarray, head: np.ndarray, reference: str = INTENSITY_REFERENCE) -> np.ndarray:
    """Head intensities to [0, 1] by percentiles of the head (or of its interior), or by their ranks in the head;
    the air stays 0."""
    if reference not in INTENSITY_REFERENCES:
        raise ValueError(f"unknown intensity reference {reference!r}, expected one of {INTENSITY_REFERENCES}")
    if reference == "ranks":
        return head_ranks(values, head)
    region = erode_cross(head, INTERIOR_EROSION) if reference == "interior" else head
    inside = values[region] if np.count_nonzero(region) >= 16 else values[head]  # a sliver of head has no interior
    if inside.size < 16:
        return np.zeros_like(values)
    low, high = np.percentile(inside, HEAD_PERCENTILES)
    if high - low < 1e-6:
        return np.where(head, 0.5, 0.0).astype(np.float32)
    scaled = (values - low) / (high - low) * BRIGHT_LEVEL
    return np.clip(scaled, 0.0, 1.0) * head


def head_ranks(values: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Each head pixel's mid-rank among the head's pixels, as a share in (0, 1) (equal values share one rank:
    a uniform head is 0.5 throughout); the air stays 0."""
    out = np.zeros(values.shape, np.float32)
    if np.count_nonzero(head) < 16:
        return out
    _, position, counts = np.unique(values[head], return_inverse=True, return_counts=True)
    out[head] = ((np.cumsum(counts) - counts / 2) / counts.sum())[position]
    return out


def prepare(gray: np.ndarray, size: int = IMAGE_SIZE, reference: str = INTENSITY_REFERENCE) -> Prepared:
    """Everything the network, the heatmap and the quality gate need from one slice; `reference` is the
    intensity reference of the model that will read it (see INTENSITY_REFERENCES)."""
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"preprocess expects a 2-D grayscale array, got shape {gray.shape}")
    work = np.nan_to_num(downsize(gray, WORK_SIDE), nan=0.0, posinf=0.0, neginf=0.0)
    small = downsize(work, MASK_SIDE)
    mask = head_mask(small)
    box = scaled_box(head_box(mask), work.shape[0] / small.shape[0])
    head = resize(crop_square(resize(mask.astype(np.float32), work.shape[::-1]), box), size) > 0.5
    square = resize(crop_square(work, box), size)
    tensor = standardise(square, head, reference).astype(np.float32)[..., np.newaxis]
    return Prepared(tensor=tensor, head=head, work=work, box=box, head_fraction=float(mask.mean()))


def preprocess(gray: np.ndarray, size: int = IMAGE_SIZE, reference: str = INTENSITY_REFERENCE) -> np.ndarray:
    """The network input (size, size, 1) float32 in [0, 1] of a grayscale slice."""
    return prepare(gray, size, reference).tensor


def crop_like(mask: np.ndarray, prepared: Prepared, size: int) -> np.ndarray:
    """A map over the source slice (a tumor mask) cut and scaled exactly like the slice: (size, size) in [0, 1]."""
    height, width = prepared.work.shape
    work = resize(mask.astype(np.float32), (width, height)) if mask.shape != (height, width) else mask
    return np.clip(resize(crop_square(work.astype(np.float32), prepared.box), size), 0.0, 1.0)
