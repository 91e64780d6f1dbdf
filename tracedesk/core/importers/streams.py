"""The byte streams importers read through: a gunzipped file bounded in size, a range of a
file. Kept out of the compiled modules (setup.py): they inherit from io's C types."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from typing import IO, Any

# Traces compress 5-30x; a file that inflates far beyond that is a decompression bomb.
MAX_RATIO = 100
MIN_LIMIT = 64 << 20  # small files may inflate this far whatever their ratio


def open_decompressed(raw: IO[bytes]) -> IO[bytes]:
    """The file's content, gunzipped when it starts with the gzip magic bytes; reading more
    than MAX_RATIO times the file's size raises OSError (``TRACEDESK_MAX_RATIO`` overrides)."""
    magic = raw.read(2)
    raw.seek(0)
    if magic != b"\x1f\x8b":
        return raw
    size = os.fstat(raw.fileno()).st_size if hasattr(raw, "fileno") else 0
    ratio = int(os.environ.get("TRACEDESK_MAX_RATIO") or MAX_RATIO)
    return _Bounded(gzip.GzipFile(fileobj=raw, mode="rb"), max(size * ratio, MIN_LIMIT), ratio)


class _Bounded(io.BufferedReader):
    """A decompressed stream that stops at a size limit."""

    def __init__(self, stream: gzip.GzipFile, limit: int, ratio: int):
        super().__init__(stream)  # type: ignore[arg-type]
        self.limit, self.ratio = limit, ratio

    def _check(self, data: bytes) -> bytes:
        if self.raw.tell() > self.limit:  # type: ignore[attr-defined]
            raise OSError(
                f"it decompresses to more than {self.limit >> 20:,} MB ({self.ratio}x its size)"
                "; set TRACEDESK_MAX_RATIO to a larger ratio to import it anyway"
            )
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # in chunks, so that a bomb stops at the limit
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        return self._check(super().read(size))

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # a line can be the whole (inflated) file: in pieces
            pieces = []
            while piece := self._check(super().readline(1 << 20)):
                pieces.append(piece)
                if piece.endswith(b"\n"):
                    break
            return b"".join(pieces)
        return self._check(super().readline(size))

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        while line := self.readline():
            yield line


class Range(io.RawIOBase):
    """Bytes start to end of a file."""

    def __init__(self, raw: IO[bytes], start: int, end: int):
        raw.seek(start)
        self.raw, self.left = raw, end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.raw.readinto(memoryview(buffer)[: self.left])  # type: ignore[attr-defined]
        self.left -= count
        return count
