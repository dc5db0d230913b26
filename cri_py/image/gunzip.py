"""A gzip stream (RFC 1952, one or more members) read as the bytes it holds.

Python 3.11's `gzip.GzipFile` inflates 8 KiB of input per call and runs a second pass over
the output for the CRC; a layer of 100 MB makes tens of thousands of such Python-level calls,
each taking the GIL the downloading event loop wants. Here zlib gets a MiB of input per
call and checks the trailer's CRC-32 and size itself (its gzip mode does), so the Python work
per byte is small and the inflate runs with the GIL released.

The output of one call is bounded: a hostile member that inflates a MiB of input into a GiB
comes out a slice at a time, and the caller's byte bound stops it.
"""

from __future__ import annotations

import zlib
from typing import Protocol

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, the largest window
_INPUT_CHUNK = 1 << 20
_OUTPUT_MAX = 4 << 20


class Readable(Protocol):
    """What layers are read from: a file, a download pipe, a decompressor."""

    def read(self, size: int = -1, /) -> bytes: ...


class GunzipError(ValueError):
    """The stream is not (or stops being) valid gzip."""


class GunzipReader:
    def __init__(
        self, source: Readable, input_chunk: int = _INPUT_CHUNK, output_max: int = _OUTPUT_MAX
    ) -> None:
        self._source = source
        self._input_chunk = input_chunk
        self._output_max = output_max
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._member_begun = False  # bytes of the current member went into the inflater
        self._pending = b""  # input not yet given to the inflater
        self._source_done = False
        self._out = memoryview(b"")

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            parts = []
            while self._fill():
                parts.append(bytes(self._out))
                self._out = memoryview(b"")
            return b"".join(parts)
        if not self._fill():
            return b""
        out = bytes(self._out[:size])
        self._out = self._out[size:]
        return out

    def _fill(self) -> bool:
        """Inflate until there is output; False at the end of the last member."""
        while not self._out:
            if not self._next_input():
                return False
            try:
                data = self._inflater.decompress(self._pending, self._output_max)
            except zlib.error as exc:
                raise GunzipError(f"invalid gzip stream: {exc}") from exc
            self._member_begun = True
            self._pending = self._inflater.unconsumed_tail
            if self._inflater.eof:
                # another member may follow, after zero padding (which gzip(1) accepts)
                self._pending = self._inflater.unused_data
                self._inflater = zlib.decompressobj(_GZIP_WBITS)
                self._member_begun = False
            self._out = memoryview(data)
        return True

    def _next_input(self) -> bool:
        """Make `_pending` non-empty; False at a clean end of the stream."""
        while True:
            if not self._member_begun:
                self._pending = self._pending.lstrip(b"\0")
            if self._pending:
                return True
            if not self._source_done:
                self._pending = self._source.read(self._input_chunk)
                self._source_done = not self._pending
                continue
            if self._member_begun:
                raise GunzipError("gzip stream ends inside a member")
            return False
