"""SPDY/3.1 frame encoding and decoding, header compression and the preset dictionary."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from cri_py.streaming import spdy


def test_dictionary_matches_the_spec() -> None:
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423
    assert zlib.adler32(d) == 0xE3C6A7C2
    assert hashlib.sha256(d).hexdigest() == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


ALL_FRAMES: list[spdy.Frame] = [
    spdy.DataFrame(1, b"hello"),
    spdy.DataFrame(3, b"", spdy.FLAG_FIN),
    spdy.DataFrame(0x7FFFFFFF, b"x" * 70000),
    spdy.SynStream(1, spdy.headers({"streamtype": "error"})),
    spdy.SynStream(
        5,
        spdy.headers({"streamtype": "data", "port": "80", "requestid": "0"}),
        spdy.FLAG_FIN | spdy.FLAG_UNIDIRECTIONAL,
        associated_id=3,
        priority=7,
        slot=2,
    ),
    spdy.SynReply(1),
    spdy.SynReply(3, spdy.headers({"x": ["a", "b"]}), spdy.FLAG_FIN),
    spdy.RstStream(7, spdy.RstStatus.CANCEL),
    spdy.Settings(
        (spdy.SettingsEntry(7, 65536, 1), spdy.SettingsEntry(4, 100)), spdy.FLAG_SETTINGS_CLEAR_SETTINGS
    ),
    spdy.Settings(),
    spdy.Ping(1),
    spdy.Ping(0xFFFFFFFE),
    spdy.GoAway(9, spdy.GoAwayStatus.INTERNAL_ERROR),
    spdy.Headers(3, spdy.headers({"a": "1"}), spdy.FLAG_FIN),
    spdy.WindowUpdate(0, 1 << 20),
    spdy.WindowUpdate(5, 1),
]


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_type_round_trips(frame: spdy.Frame) -> None:
    sender, receiver = spdy.FrameCodec(), spdy.FrameCodec()
    assert receiver.receive(sender.encode(frame)) == [frame]


def test_stream_of_frames_split_at_every_byte() -> None:
    """Compression state spans frames; a byte-by-byte feed must give the same frames."""
    sender, receiver = spdy.FrameCodec(), spdy.FrameCodec()
    wire = b"".join(sender.encode(f) for f in ALL_FRAMES)
    got: list[spdy.Frame] = []
    for i in range(len(wire)):
        got += receiver.receive(wire[i : i + 1])
    assert got == ALL_FRAMES


def test_control_frame_layout() -> None:
    codec = spdy.FrameCodec()
    assert codec.encode(spdy.Ping(5)) == bytes.fromhex("80030006 00000004 00000005".replace(" ", ""))
    assert codec.encode(spdy.RstStream(3, 5)) == bytes.fromhex("80030003000000080000000300000005")
    assert codec.encode(spdy.GoAway(1, 0)) == bytes.fromhex("80030007000000080000000100000000")
    assert codec.encode(spdy.WindowUpdate(1, 2)) == bytes.fromhex("80030009000000080000000100000002")
    assert codec.encode(spdy.DataFrame(3, b"ab", spdy.FLAG_FIN)) == bytes.fromhex("00000003010000026162")


def test_first_header_block_carries_the_dictionary_id() -> None:
    raw = spdy.FrameCodec().encode(spdy.SynStream(1, spdy.headers({"streamtype": "stdin"})))
    assert raw[:4] == b"\x80\x03\x00\x01"
    block = raw[8 + 10 :]
    cmf, flg = block[0], block[1]
    assert cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
    assert flg & 0x20, "FDICT must be set"
    assert struct.unpack(">I", block[2:6])[0] == 0xE3C6A7C2


def test_header_block_wire_format() -> None:
    block = spdy.encode_header_block({"port": ("80",), "multi": ("a", "b")})
    assert block == (
        struct.pack(">I", 2) + struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80"
        + struct.pack(">I", 5) + b"multi" + struct.pack(">I", 3) + b"a\x00b"
    )  # fmt: skip
    assert spdy.decode_header_block(block) == {"port": ("80",), "multi": ("a", "b")}


def test_decompresses_a_block_made_by_another_zlib_stream() -> None:
    """What a Go peer sends: level 9 with the dictionary and a sync flush per block."""
    z = zlib.compressobj(level=9, zdict=spdy.HEADER_DICTIONARY)
    d = spdy.HeaderDecompressor()
    for hdrs in ({"streamtype": ("error",)}, {"streamtype": ("stdout",)}):
        blob = z.compress(spdy.encode_header_block(hdrs)) + z.flush(zlib.Z_SYNC_FLUSH)
        assert d.decompress(blob) == hdrs


@pytest.mark.parametrize(
    "block",
    [
        struct.pack(">I", 1) + struct.pack(">I", 4) + b"Port" + struct.pack(">I", 0),
        struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" + struct.pack(">I", 0)) * 2,
        struct.pack(">I", 1) + struct.pack(">I", 10) + b"abc",
        struct.pack(">I", 1001),
    ],
    ids=["uppercase", "duplicate", "truncated", "too-many"],
)
def test_bad_header_blocks_are_protocol_errors(block: bytes) -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block)


def test_upper_case_names_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError):
        spdy.encode_header_block({"StreamType": ("error",)})


def test_wrong_version_and_unknown_control_types() -> None:
    codec = spdy.FrameCodec()
    assert codec.receive(struct.pack(">HHI", 0x8003, 0x00FF, 0)) == []
    with pytest.raises(spdy.ProtocolError):
        codec.receive(struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1")


def test_garbage_header_compression_is_a_protocol_error() -> None:
    frame = struct.pack(">HHI", 0x8003, 1, 14) + struct.pack(">IIBB", 1, 0, 0, 0) + b"junk"
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameCodec().receive(frame)
