"""Decode untrusted image bytes into a grayscale array, and encode arrays back to PNG.

Everything that reads a JPEG or PNG goes through `read_image`, so training, serving and
uploads share the same limits and the same grayscale conversion.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

SUPPORTED_FORMATS = ("JPEG", "PNG")
DEFAULT_MAX_PIXELS = 40_000_000  # a 6000x6000 slice is far beyond any MRI; bombs are far beyond it
MIN_SIDE = 8

# Refuse truncated files instead of silently padding them with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class UnreadableImage(ValueError):
    """The file cannot be used as an image; the message is meant for a person."""


def read_image(source: bytes | str | Path | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return the image as a 2-D float32 array in [0, 1] (H, W).

    Accepts JPEG and PNG in any mode (L, RGB, RGBA, P, LA, I;16, I, F). Colour is converted to
    luminance; transparency is composited over black, the background of an MRI slice.
    """
    if isinstance(source, bytes):
        if not source:
            raise UnreadableImage("The file is empty.")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=SUPPORTED_FORMATS) as image:
                _check_dimensions(image.size, max_pixels)
                image.load()
                return to_grayscale(image)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UnreadableImage("The image has too many pixels to be a scan slice.") from None
    except UnidentifiedImageError:
        raise UnreadableImage("The file is not a JPEG or PNG image.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(f"The image is damaged or incomplete ({error}).") from None


def _check_dimensions(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise UnreadableImage(
            f"The image is {width}x{height} pixels; the limit is {max_pixels:,} pixels."
        )
    if min(width, height) < MIN_SIDE:
        raise UnreadableImage(f"The image is only {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed.")


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to float32 luminance in [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        peak = float(pixels.max()) if pixels.size else 0.0
        return np.clip(pixels / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(pixels)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (luminance * rgba[..., 3]).astype(np.float32)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def encode_png(gray: np.ndarray) -> bytes:
    """Encode a [0, 1] grayscale array as an 8-bit PNG rebuilt from pixels (no metadata survives)."""
    pixels = np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
