"""Files that must never crash or hang BrainScan, built in memory; and valid seeds to mutate (JPEG, PNG
and DICOM, the formats the upload takes)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from tests.factories import phantom_bytes
from tests.privacy.samples import mr_small, to_bytes

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


def dicom_zip_bomb(megabytes: int = 300) -> bytes:
    """A DICOM file in the deflate transfer syntax whose dataset inflates from about 300 kB to 300 MB."""
    ds = mr_small()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = to_bytes(ds)
    stream = io.BytesIO(data)
    stream.seek(132)
    pydicom.filereader._read_file_meta_info(stream)  # to find where the deflated dataset begins
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"".join(deflate.compress(bytes(1 << 20)) for _ in range(megabytes)) + deflate.flush()
    return data[: stream.tell()] + body


def long_thin_png(width: int = 390_625, height: int = 64) -> bytes:
    """The security test's poison: a grayscale PNG of exactly 25,000,000 pixels, about 25 kB on disk, that
    once made the crop allocate width x width floats and killed the worker."""
    row = b"\x00" + bytes(width)
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def long_thin_dicom() -> bytes:
    """A DICOM file as long and thin as DICOM can say (Columns is 16-bit): 64 x 65,535, carrying few pixels."""
    ds = mr_small()
    ds.Rows, ds.Columns = 64, 65_535
    return to_bytes(ds)


def dicom_pixel_bomb() -> bytes:
    """A DICOM file that declares 60000 x 60000 pixels and carries almost none."""
    ds = mr_small()
    ds.Rows = ds.Columns = 60_000
    return to_bytes(ds)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def sixteen_bit_png(seed: int = 0) -> bytes:
    """The phantom slice of `seed` as a 16-bit grayscale PNG (each 8-bit value v stored as v * 257)."""
    pixels = np.asarray(Image.open(io.BytesIO(phantom_bytes(seed, True))), dtype=np.uint16) * 257
    return encode(Image.fromarray(pixels))


UNSUPPORTED = "does not match any supported format"


def bad_files() -> list[tuple[str, bytes, str]]:
    """(file name, content, a fragment of the reason the person who uploaded it must be given)."""
    png, jpeg = phantom_bytes(3, True), phantom_bytes(3, True, "JPEG")
    return [
        ("empty.png", b"", "empty"),
        ("truncated.png", png[: len(png) // 2], "damaged or incomplete"),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "damaged or incomplete"),
        ("wrong-magic.png", b"\x89PNX" + png[4:], UNSUPPORTED),
        ("page.png", b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", UNSUPPORTED),
        ("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9999" height="9999"><rect/></svg>',
         UNSUPPORTED),
        ("bomb.png", png_bomb(), "pixels"),
        ("dot.png", encode(Image.new("L", (1, 1), 128)), "at least 8x8"),
        ("zip-bomb.dcm", dicom_zip_bomb(), "Deflate-compressed DICOM files are not accepted"),
        ("pixel-bomb.dcm", dicom_pixel_bomb(), "no side may exceed"),
        ("long-thin.png", long_thin_png(), "no side may exceed"),
        ("long-thin.dcm", long_thin_dicom(), "no side may exceed"),
        ("truncated.dcm", Path(get_testdata_file("MR_truncated.dcm", download=False)).read_bytes(),
         "damaged or incomplete"),
    ]


def seeds() -> list[bytes]:
    """Small valid files of each kind the decoder takes, for mutation."""
    gray = Image.fromarray(np.linspace(0, 255, 32 * 32, dtype=np.uint8).reshape(32, 32))
    return [encode(gray), encode(gray, "JPEG"), encode(gray.convert("RGBA")), encode(gray.convert("P")),
            encode(Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)), encode(gray.convert("RGB"), "JPEG"),
            to_bytes(mr_small())]
