"""SPDY/3.1 framing as a protocol core without I/O: bytes in, frames out, frames in, bytes out.

No maintained Python SPDY library exists, and Kubernetes clients (client-go over
moby/spdystream) still speak SPDY/3.1 for exec, attach and port-forward. Only the parts that
peer uses are here: all frame types, and the per-connection zlib header compression with the
SPDY/3 preset dictionary. Flow control is deliberately absent: spdystream never sends
WINDOW_UPDATE, so honouring windows would stall every transfer over 64 KiB.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VERSION = 3
MAX_LENGTH = (1 << 24) - 1
MAX_HEADER_PAIRS = 1000

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR_SETTINGS = 0x01


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class ProtocolError(Exception):
    """The peer sent something that is not valid SPDY/3.1; the connection must end."""


def _build_dictionary() -> bytes:
    # The SPDY/3 draft defines this dictionary byte by byte; this recipe rebuilds it
    # (1423 bytes, Adler-32 0xe3c6a7c2, checked by a unit test).
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    part1 = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    part2 = (
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
        b"403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
        b"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        b"chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        b"text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return part1 + part2


HEADER_DICTIONARY = _build_dictionary()

# A header block: lower-case name -> values (several values travel NUL-joined on the wire).
HeaderBlock = Mapping[str, tuple[str, ...]]


def headers(pairs: Mapping[str, str | Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Build a header block from plain strings or lists of strings."""
    return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in pairs.items()}


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    flags: int = 0
    associated_id: int = 0
    priority: int = 0
    slot: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class SettingsEntry:
    id: int
    value: int
    flags: int = 0


@dataclass(frozen=True)
class Settings:
    entries: tuple[SettingsEntry, ...] = ()
    flags: int = 0


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers | WindowUpdate


def encode_header_block(block: HeaderBlock) -> bytes:
    """The uncompressed name/value block."""
    out = [struct.pack(">I", len(block))]
    for name, values in block.items():
        raw_name = name.encode()
        if raw_name != raw_name.lower():
            raise ValueError(f"SPDY header names must be lower case: {name!r}")
        raw_value = b"\x00".join(v.encode() for v in values)
        out.append(
            struct.pack(">I", len(raw_name)) + raw_name + struct.pack(">I", len(raw_value)) + raw_value
        )
    return b"".join(out)


def decode_header_block(raw: bytes) -> dict[str, tuple[str, ...]]:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        if count > MAX_HEADER_PAIRS:
            raise ProtocolError(f"too many header pairs: {count}")
        pos = 4
        out: dict[str, tuple[str, ...]] = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4 : pos + 4 + n]
            pos += 4 + n
            (v,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4 : pos + 4 + v]
            pos += 4 + v
            if len(name) != n or len(value) != v:
                raise ProtocolError("truncated header block")
            key = name.decode()
            if not key or key != key.lower():
                raise ProtocolError(f"invalid header name {key!r}")
            if key in out:
                raise ProtocolError(f"duplicate header {key!r}")
            out[key] = tuple(p.decode() for p in value.split(b"\x00"))
        return out
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed header block: {e}") from e


class HeaderCompressor:
    """One zlib stream per direction for the whole connection, as SPDY/3 requires."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(level=9, zdict=HEADER_DICTIONARY)

    def compress(self, block: HeaderBlock) -> bytes:
        raw = encode_header_block(block)
        return self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> dict[str, tuple[str, ...]]:
        try:
            raw = self._z.decompress(data)
        except zlib.error as e:
            raise ProtocolError(f"header decompression failed: {e}") from e
        return decode_header_block(raw)


def _control(ftype: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def _data(stream_id: int, flags: int, data: bytes) -> bytes:
    if len(data) > MAX_LENGTH:
        raise ValueError("data frame too large")
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class FrameCodec:
    """Turns bytes into frames and frames into bytes for one connection (one per side).

    It carries the compression state, so every frame must pass through `encode` in the
    order it is written to the wire.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._compressor = HeaderCompressor()
        self._decompressor = HeaderDecompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case DataFrame(stream_id, data, flags):
                return _data(stream_id, flags, data)
            case SynStream(stream_id, hdrs, flags, assoc, prio, slot):
                block = self._compressor.compress(hdrs)
                head = struct.pack(">IIBB", stream_id & 0x7FFFFFFF, assoc & 0x7FFFFFFF, (prio & 7) << 5, slot)
                return _control(FrameType.SYN_STREAM, flags, head + block)
            case SynReply(stream_id, hdrs, flags):
                block = self._compressor.compress(hdrs)
                return _control(FrameType.SYN_REPLY, flags, struct.pack(">I", stream_id & 0x7FFFFFFF) + block)
            case Headers(stream_id, hdrs, flags):
                block = self._compressor.compress(hdrs)
                return _control(FrameType.HEADERS, flags, struct.pack(">I", stream_id & 0x7FFFFFFF) + block)
            case RstStream(stream_id, status):
                return _control(FrameType.RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, status))
            case Settings(entries, flags):
                body = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", (e.flags << 24) | (e.id & 0xFFFFFF), e.value) for e in entries
                )
                return _control(FrameType.SETTINGS, flags, body)
            case Ping(ping_id):
                return _control(FrameType.PING, 0, struct.pack(">I", ping_id))
            case GoAway(last, status):
                return _control(FrameType.GOAWAY, 0, struct.pack(">II", last & 0x7FFFFFFF, status))
            case WindowUpdate(stream_id, delta):
                return _control(
                    FrameType.WINDOW_UPDATE, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
                )
        raise TypeError(f"not a SPDY frame: {frame!r}")

    def receive(self, data: bytes) -> list[Frame]:
        """Feed bytes from the wire; returns every frame now complete."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word0, word1 = struct.unpack_from(">II", self._buf, 0)
            length = word1 & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            flags = word1 >> 24
            if word0 & 0x80000000:
                frame = self._decode_control(word0, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(DataFrame(word0 & 0x7FFFFFFF, payload, flags))
        return frames

    def _decode_control(self, word0: int, flags: int, p: bytes) -> Frame | None:
        version = (word0 >> 16) & 0x7FFF
        ftype = word0 & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        try:
            if ftype == FrameType.SYN_STREAM:
                sid, assoc, prio, slot = struct.unpack_from(">IIBB", p, 0)
                hdrs = self._decompressor.decompress(p[10:])
                return SynStream(sid & 0x7FFFFFFF, hdrs, flags, assoc & 0x7FFFFFFF, prio >> 5, slot)
            if ftype in (FrameType.SYN_REPLY, FrameType.HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                hdrs = self._decompressor.decompress(p[4:])
                cls = SynReply if ftype == FrameType.SYN_REPLY else Headers
                return cls(sid & 0x7FFFFFFF, hdrs, flags)
            if ftype == FrameType.RST_STREAM:
                sid, status = struct.unpack(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if ftype == FrameType.SETTINGS:
                (n,) = struct.unpack_from(">I", p, 0)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append(SettingsEntry(fid & 0xFFFFFF, value, fid >> 24))
                return Settings(tuple(entries), flags)
            if ftype == FrameType.PING:
                (pid,) = struct.unpack(">I", p)
                return Ping(pid)
            if ftype == FrameType.GOAWAY:
                # SPDY/2 peers omit the status; accept a 4-byte payload too.
                last = struct.unpack_from(">I", p, 0)[0]
                status = struct.unpack_from(">I", p, 4)[0] if len(p) >= 8 else 0
                return GoAway(last & 0x7FFFFFFF, status)
            if ftype == FrameType.WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as e:
            raise ProtocolError(f"malformed control frame type {ftype}: {e}") from e
        # Unknown control frame types must be ignored (SPDY/3 §2.2.1).
        return None
