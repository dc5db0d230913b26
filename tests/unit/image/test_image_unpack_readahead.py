"""gzip's small reads are served from big reads of the layer stream, and the bytes stay the same."""

from __future__ import annotations

import gzip
import io
import os

from cri_py.image.unpack import decompressed


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        out = self._io.read(size)
        self.reads.append(len(out))
        return out


def test_gzip_reads_the_source_in_big_chunks() -> None:
    payload = os.urandom(3 << 20)  # does not compress: 3 MiB of compressed stream
    source = CountingSource(gzip.compress(payload, compresslevel=1) + gzip.compress(b"second member"))
    stream = decompressed(source)
    out = b""
    while chunk := stream.read(65536):
        out += chunk
    assert out == payload + b"second member"
    assert len(source.reads) <= 16, source.reads  # 8 KiB reads would be ~400
