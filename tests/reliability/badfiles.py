"""Files that must never crash or hang BrainScan, built in memory; and valid seeds to mutate."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.factories import phantom_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: about 50 kB on disk, 400 megapixels decoded."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte, then the packed pixels
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def sixteen_bit_png(seed: int = 0) -> bytes:
    """The phantom slice of `seed` as a 16-bit grayscale PNG (each 8-bit value v stored as v * 257)."""
    pixels = np.asarray(Image.open(io.BytesIO(phantom_bytes(seed, True))), dtype=np.uint16) * 257
    return encode(Image.fromarray(pixels))


def bad_files() -> list[tuple[str, bytes, str]]:
    """(file name, content, a fragment of the reason the person who uploaded it must be given)."""
    png, jpeg = phantom_bytes(3, True), phantom_bytes(3, True, "JPEG")
    return [
        ("empty.png", b"", "empty"),
        ("truncated.png", png[: len(png) // 2], "damaged or incomplete"),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "damaged or incomplete"),
        ("wrong-magic.png", b"\x89PNX" + png[4:], "not a JPEG or PNG"),
        ("page.png", b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "not a JPEG or PNG"),
        ("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9999" height="9999"><rect/></svg>',
         "not a JPEG or PNG"),
        ("bomb.png", png_bomb(), "pixels"),
        ("dot.png", encode(Image.new("L", (1, 1), 128)), "at least 8x8"),
    ]


def seeds() -> list[bytes]:
    """Small valid files of each kind the decoder takes, for mutation."""
    gray = Image.fromarray(np.linspace(0, 255, 32 * 32, dtype=np.uint8).reshape(32, 32))
    return [encode(gray), encode(gray, "JPEG"), encode(gray.convert("RGBA")), encode(gray.convert("P")),
            encode(Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)), encode(gray.convert("RGB"), "JPEG")]
