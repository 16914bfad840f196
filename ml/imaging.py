"""Decode untrusted image files into grayscale slices, and store slices losslessly.

Every reader checks the image's size from its header before decoding anything: the longest side,
the aspect ratio, and the bytes the decoded pixels would take (bytes per sample and samples per
pixel counted). A slice is shrunk to at most SLICE_SIDE pixels as soon as it is decoded, so what
follows (storage, preprocessing, the heatmap) never handles more.

Slices are stored as 16-bit grayscale PNG (`encode_png`) and read back exactly (`read_stored`):
`as_stored` gives, without a file, the very array the worker will read, so the command line and
the worker assess identical pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = ("JPEG", "PNG")
MIN_SIDE = 8
SLICE_SIDE = 1024  # no MRI slice needs more; larger decodes are shrunk at once
STORED_LEVELS = 65535
PERCENTILE_WINDOW = (0.5, 99.5)  # for high-bit-depth images that carry no window of their own
BYTES_PER_SAMPLE = {"1": 1, "L": 1, "P": 1, "LA": 1, "PA": 1, "RGB": 1, "RGBA": 1, "CMYK": 1, "YCbCr": 1,
                    "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}

# Refuse truncated files instead of silently padding them with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class UnreadableImage(ValueError):
    """The file cannot be used as an image; the message is meant for a person. `code` names the reason."""

    code = "unreadable"


class ImageTooLarge(UnreadableImage):
    code = "too_large"


class PixelBudget:
    """Pixels a group of files (one upload request) may hold in all; each header checked spends from it."""

    def __init__(self, pixels: int):
        self.total, self.left = pixels, pixels

    def spend(self, pixels: int) -> None:
        if pixels > self.left:
            raise ImageTooLarge(f"The files sent together hold more than {self.total:,} pixels; send fewer at once.")
        self.left -= pixels


@dataclass(frozen=True)
class Limits:
    """What one decoded image may take; checked from the header, before decoding."""

    max_pixels: int = 25_000_000
    max_side: int = 8192
    max_aspect: float = 4.0
    max_decoded_bytes: int = 64 * 1024 * 1024
    budget: PixelBudget | None = None  # shared by the files of one request

    def check(self, width: int, height: int, samples: int = 1, bytes_per_sample: int = 1, frames: int = 1,
              what: str = "The image") -> None:
        """Raise with the reason when an image of this shape and depth is not accepted."""
        if min(width, height) < MIN_SIDE:
            raise UnreadableImage(f"{what} is only {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed.")
        if max(width, height) > self.max_side:
            raise ImageTooLarge(f"{what} is {width}x{height} pixels; no side may exceed {self.max_side:,} pixels.")
        if max(width, height) / min(width, height) > self.max_aspect:
            raise ImageTooLarge(f"{what} is {width}x{height} pixels, {max(width, height) / min(width, height):.0f} "
                                f"times longer than wide; a scan slice is at most {self.max_aspect:g} times.")
        if width * height * frames > self.max_pixels:
            raise ImageTooLarge(f"{what} holds {width * height * frames:,} pixels; the limit is "
                                f"{self.max_pixels:,}.")
        decoded = width * height * frames * samples * bytes_per_sample
        if decoded > self.max_decoded_bytes:
            raise ImageTooLarge(f"{what} would take {decoded / 1_048_576:.0f} MB once decoded; the limit is "
                                f"{self.max_decoded_bytes / 1_048_576:.0f} MB.")
        if self.budget is not None:
            self.budget.spend(width * height * frames)


DEFAULT_LIMITS = Limits()


def read_image(source: bytes | str | Path | BinaryIO, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """A JPEG or PNG upload as a 2-D float32 array in [0, 1], at most SLICE_SIDE on its longest side."""
    return decode_image(source, limits)[0]


def decode_image(source: bytes | str | Path | BinaryIO, limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, bool]:
    """(the slice as read_image returns it, whether the picture is in colour).

    Accepts any mode (L, RGB, RGBA, P, LA, I;16, I, F). Colour becomes luminance; transparency is
    composited over black, the background of an MRI slice; the EXIF orientation is applied;
    16- and 32-bit images are windowed by percentiles, so one hot pixel cannot darken the rest.
    """
    if isinstance(source, bytes):
        if not source:
            raise UnreadableImage("The file is empty.")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=SUPPORTED_FORMATS) as image:
                check_header(image, limits)
                if image.format == "JPEG":  # let libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale
                    image.draft(image.mode, (SLICE_SIDE, SLICE_SIDE))
                image.load()
                image = ImageOps.exif_transpose(shrink(image))
                return downsize(to_grayscale(image)), colour_spread(image) > COLOUR_SPREAD
    except UnreadableImage:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageTooLarge("The image has too many pixels to be a scan slice.") from None
    except UnidentifiedImageError:
        raise UnreadableImage("The file is not a JPEG or PNG image.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(f"The image is damaged or incomplete ({error}).") from None


def shrink(image: Image.Image) -> Image.Image:
    """A large image reduced by a whole factor in its own mode (box filter), before any float copy is made:
    a 5000 x 5000 slice never exists as 100 MB of floats."""
    factor = max(image.size) // SLICE_SIDE
    if factor >= 2 and image.mode in ("L", "LA", "RGB", "RGBA", "I;16", "I", "F"):
        return image.reduce(factor)
    return image


def shrink_array(pixels: np.ndarray) -> np.ndarray:
    """The same for a decoded array (rows, columns[, samples]): block means over a whole factor."""
    factor = max(pixels.shape[:2]) // SLICE_SIDE
    if factor < 2:
        return pixels
    rows, columns = (pixels.shape[0] // factor) * factor, (pixels.shape[1] // factor) * factor
    blocks = pixels[:rows, :columns].reshape(rows // factor, factor, columns // factor, factor, *pixels.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


# MRI slices are gray, even when saved as RGB: at most 0.0072 over the 6,419 slices of brain-mri (0 on tcga-lgg);
# photographs from 0.055 (scikit-image's rocket) to 0.18 (its retina).
COLOUR_SPREAD = 0.03


def check_header(image: Image.Image, limits: Limits) -> None:
    width, height = image.size
    samples = len(image.getbands())
    limits.check(width, height, samples, BYTES_PER_SAMPLE.get(image.mode, 4))


def colour_spread(image: Image.Image) -> float:
    """Mean distance of a pixel's channels from their mean, on a 64-pixel thumbnail: 0 for a gray picture,
    whatever its mode."""
    if image.mode not in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr"):
        return 0.0
    small = image.convert("RGB")
    small.thumbnail((64, 64))
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to float32 luminance in [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return window_by_percentiles(np.asarray(image, dtype=np.float32))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (luminance * rgba[..., 3]).astype(np.float32)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def window_by_percentiles(values: np.ndarray) -> np.ndarray:
    """Values to [0, 1] between their 0.5th and 99.5th percentiles: the display window of an image that
    brings none, robust to a few extreme pixels (never the maximum)."""
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    sample = values[::max(1, values.shape[0] // 256), ::max(1, values.shape[1] // 256)]
    low, high = np.percentile(sample, PERCENTILE_WINDOW)
    if high - low <= 0:
        return np.zeros_like(values) if high <= 0 else np.clip(values / high, 0.0, 1.0)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def downsize(gray: np.ndarray, side: int = SLICE_SIDE) -> np.ndarray:
    """Shrink (area-averaging) so that the longest side is at most `side`; never enlarge."""
    height, width = gray.shape
    scale = side / max(height, width)
    if scale >= 1:
        return gray.astype(np.float32, copy=False)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray.astype(np.float32, copy=False), mode="F").resize(size, Image.BOX))


def as_stored(gray: np.ndarray) -> np.ndarray:
    """Exactly what `read_stored(encode_png(gray))` returns."""
    return (np.rint(np.clip(gray, 0.0, 1.0) * STORED_LEVELS) / STORED_LEVELS).astype(np.float32)


def encode_png(gray: np.ndarray) -> bytes:
    """A [0, 1] slice as a 16-bit grayscale PNG rebuilt from pixels (no metadata survives)."""
    pixels = np.rint(np.clip(gray, 0.0, 1.0) * STORED_LEVELS).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)  # uint16: mode I;16
    return buffer.getvalue()


def read_stored(data: bytes, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """A slice BrainScan stored (16-bit, or 8-bit from earlier versions) as the exact [0, 1] array.

    No window is applied: the stored values already are the slice.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
                check_header(image, limits)
                image.load()
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    return (np.asarray(image, dtype=np.float32) / STORED_LEVELS).clip(0.0, 1.0)
                return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except UnreadableImage:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageTooLarge("The stored image has too many pixels to be a scan slice.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(f"The stored image is damaged ({error}).") from None
