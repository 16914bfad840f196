"""Uploads streamed to disk, encrypted: never whole in memory, never in the clear on disk.

An upload may be a DICOM file whose header names the patient. Each uploaded file is written, chunk by
chunk as it arrives, to a private temporary file through AES-256-CTR under a random key that lives only
in this request's memory; reading it decrypts on the fly. When the request ends the file is deleted, and
a copy left behind by a crash is unreadable noise. A request's memory stays bounded by the chunk size,
whatever the size of the upload (a whole series is hundreds of MB).
"""

from __future__ import annotations

import io
import os
import tempfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


def _folder() -> str:
    folder = settings.VAR_DIR / "uploads"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(folder)


class EncryptedTemporaryFile(io.RawIOBase):
    """A seekable, readable file over an encrypted temporary file (CTR mode: any offset decrypts alone)."""

    def __init__(self):
        self._key, self._nonce = os.urandom(32), os.urandom(16)
        self._file = tempfile.NamedTemporaryFile(dir=_folder(), prefix="upload-", delete=True)
        self._position = 0
        self.size = 0

    def _cipher(self, offset: int):
        """A keystream positioned at `offset` (AES blocks of 16 bytes; the counter is the nonce plus the block)."""
        counter = (int.from_bytes(self._nonce, "big") + offset // 16) % (1 << 128)
        transform = Cipher(algorithms.AES(self._key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()
        transform.update(b"\0" * (offset % 16))
        return transform

    def append(self, data: bytes) -> None:
        self._file.seek(self.size)
        self._file.write(self._cipher(self.size).update(data))
        self.size += len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        self._file.flush()
        self._file.seek(self._position)
        data = self._file.read(len(buffer))
        plain = self._cipher(self._position).update(data)
        buffer[:len(plain)] = plain
        self._position += len(plain)
        return len(plain)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.size - self._position)
        buffer = bytearray(size)
        return bytes(buffer[:self.readinto(memoryview(buffer))])

    def close(self) -> None:
        if not self.closed:
            self._file.close()  # deletes it
        super().close()


class EncryptedUploadedFile(UploadedFile):
    def __init__(self, name: str, content_type: str, charset, content_type_extra=None):
        super().__init__(EncryptedTemporaryFile(), name, content_type, 0, charset, content_type_extra)


class EncryptedFileUploadHandler(FileUploadHandler):
    """Every uploaded file goes to an EncryptedUploadedFile (set as the only upload handler)."""

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file = EncryptedUploadedFile(self.file_name, self.content_type, self.charset, self.content_type_extra)

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.file.file.append(raw_data)

    def file_complete(self, file_size: int):
        self.file.size = file_size
        self.file.seek(0)
        return self.file
