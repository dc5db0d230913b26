"""The gzip reader of layers: the bytes gzip(1) would give, read from the source in big pieces,
and every way a stream can be broken is an error rather than short or wrong output."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from cri_py.image.gunzip import GunzipError, GunzipReader
from cri_py.image.unpack import decompressed


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        out = self._io.read(size)
        self.reads.append(len(out))
        return out


def read_all(stream: GunzipReader, size: int = 65536) -> bytes:
    out = bytearray()
    while chunk := stream.read(size):
        assert len(chunk) <= size
        out += chunk
    return bytes(out)


def test_members_and_padding_come_out_as_gzip_gives_them() -> None:
    payload = os.urandom(3 << 20)  # does not compress: 3 MiB of compressed stream
    blob = gzip.compress(payload, compresslevel=1) + b"\0" * 700 + gzip.compress(b"second member")
    source = CountingSource(blob)
    assert read_all(GunzipReader(source)) == gzip.decompress(blob) == payload + b"second member"
    assert len(source.reads) <= 8, source.reads  # gzip.GzipFile in 3.11: one 8 KiB read each, ~400


def test_the_sniffed_stream_of_a_layer_is_this_reader() -> None:
    blob = gzip.compress(b"layer bytes" * 1000, mtime=0)
    assert decompressed(io.BytesIO(blob)).read() == b"layer bytes" * 1000


def test_one_read_gives_a_bounded_slice_of_a_bomb() -> None:
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros in ~64 KiB
    reader = GunzipReader(io.BytesIO(bomb), output_max=1 << 20)
    sizes = []
    while chunk := reader.read(1 << 30):
        sizes.append(len(chunk))
    assert sum(sizes) == 64 << 20
    assert max(sizes) <= 1 << 20


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="cut-in-the-data"),
        pytest.param(lambda b: b[:-3], id="cut-in-the-trailer"),
        pytest.param(
            lambda b: b[:-8] + (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little") + b[-4:],
            id="wrong-crc",
        ),
        pytest.param(lambda b: b[:-4] + (123).to_bytes(4, "little"), id="wrong-size"),
        pytest.param(lambda b: b + b"trailing garbage", id="garbage-after-a-member"),
        pytest.param(lambda b: b[:10] + b"\xff" * 40 + b[50:], id="corrupt-data"),
    ],
)
def test_a_broken_stream_is_an_error(broken: object) -> None:
    blob = gzip.compress(os.urandom(4096) + b"text " * 4000, mtime=0)
    bad = broken(blob)  # type: ignore[operator]
    with pytest.raises(GunzipError):
        read_all(GunzipReader(io.BytesIO(bad)))
    with pytest.raises((EOFError, OSError, zlib.error)):
        gzip.decompress(bad)  # gzip refuses it too: the reader is not stricter than gzip
