"""Unpack one layer tar into its own directory in the form overlayfs reads.

Our own extraction rather than `tarfile.extractall`: its filters refuse device nodes and
absolute symlinks (both legal in images) and it restores no xattrs. Whiteouts become what
the kernel writes itself: `.wh.X` -> character device 0/0 named X, `.wh..wh..opq` in D ->
xattr `trusted.overlay.opaque=y` on D.

Hostile tars: every entry lands inside the destination. Names are resolved lexically
(`..` may not climb above the root, a leading `/` is dropped), and no entry may be written
through a symlink or a non-directory created by an earlier entry of the same layer (each
layer starts from an empty directory, so only the layer itself could have put one there).
Hard links must name an earlier entry inside the layer. Entry count and unpacked bytes are
bounded, so a decompression bomb fails instead of filling the disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import zstandard

from cri_py.errors import Internal
from cri_py.image.gunzip import GunzipError, GunzipReader, Readable

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_CHUNK = 1 << 20
_TAR_BUF = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class HostileLayer(Internal):
    """The layer tries to write outside its directory, or breaks a bound."""


@dataclass(frozen=True)
class UnpackLimits:
    max_entries: int = 2_000_000
    max_bytes: int = 128 << 30  # uncompressed tar stream
    max_name: int = 4096


@dataclass(frozen=True)
class UnpackResult:
    diff_id: str  # sha256 of the uncompressed tar stream
    tar_size: int
    entries: int


class _Prepended:
    """A stream with a few already-read bytes put back in front (for sniffing magic)."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            out, self._head = self._head + self._rest.read(), b""
            return out
        out, self._head = self._head[:size], self._head[size:]
        return out


class _Hashing:
    """Hash and count the uncompressed stream as tarfile reads it; enforce the byte bound."""

    def __init__(self, inner: Readable, max_bytes: int) -> None:
        self._inner = inner
        self._max = max_bytes
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.count += len(data)
        if self.count > self._max:
            raise HostileLayer(f"layer unpacks to more than {self._max} bytes")
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _read_exact_head(raw: Readable, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = raw.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def decompressed(raw: Readable) -> Readable:
    """gzip (multi-member), zstd (multi-frame) or plain tar, sniffed by magic bytes."""
    head = _read_exact_head(raw, 4)
    stream = _Prepended(head, raw)
    if head.startswith(_GZIP_MAGIC):
        return GunzipReader(stream)
    if head.startswith(_ZSTD_MAGIC):
        reader: Readable = zstandard.ZstdDecompressor().stream_reader(
            cast(Any, stream), read_across_frames=True
        )
        return reader
    return stream


def unpack_layer(
    raw: Readable,
    dest: Path,
    limits: UnpackLimits | None = None,
    on_entry: Callable[[int], None] | None = None,
) -> UnpackResult:
    """Unpack the (possibly compressed) layer stream `raw` into the empty directory `dest`."""
    limits = limits or UnpackLimits()
    hashing = _Hashing(decompressed(raw), limits.max_bytes)
    extractor = _Extractor(dest, limits)
    try:
        # small stream reads: tarfile slices its buffer on every read, so a big one is copied often
        with tarfile.open(fileobj=hashing, mode="r|", bufsize=_TAR_BUF) as tar:  # type: ignore[call-overload]
            for member in tar:
                extractor.add(tar, member)
                if on_entry is not None:
                    on_entry(extractor.entries)
        hashing.drain()
    except tarfile.TarError as exc:
        raise Internal(f"layer is not a valid tar stream: {exc}") from exc
    except (EOFError, OSError, GunzipError, zstandard.ZstdError) as exc:
        if isinstance(exc, HostileLayer):
            raise
        raise Internal(f"layer could not be unpacked: {exc}") from exc
    extractor.finish()
    return UnpackResult("sha256:" + hashing.sha.hexdigest(), hashing.count, extractor.entries)


def _clean_parts(name: str, limits: UnpackLimits) -> tuple[str, ...]:
    if len(name) > limits.max_name:
        raise HostileLayer(f"entry name longer than {limits.max_name} bytes")
    if "\x00" in name:
        raise HostileLayer(f"entry name {name!r} contains a NUL byte")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise HostileLayer(f"entry {name!r} climbs out of the layer with '..'")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


class _Extractor:
    def __init__(self, dest: Path, limits: UnpackLimits) -> None:
        self.dest = dest
        self.limits = limits
        self.entries = 0
        self._root = str(dest)
        # directories known to be real directories created inside dest (no symlinks)
        self._dirs: set[tuple[str, ...]] = {()}
        self._dir_times: list[tuple[str, int]] = []

    def _path(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self._root, *parts) if parts else self._root

    def _ensure_parents(self, parts: tuple[str, ...], name: str, create: bool = True) -> None:
        for i in range(1, len(parts)):
            prefix = parts[:i]
            if prefix in self._dirs:
                continue
            path = self._path(prefix)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise HostileLayer(f"entry {name!r}: {'/'.join(prefix)} does not exist") from None
                os.mkdir(path, 0o755)
                self._dirs.add(prefix)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise HostileLayer(f"entry {name!r} goes through the symlink {'/'.join(prefix)}")
            if not stat.S_ISDIR(st.st_mode):
                raise HostileLayer(f"entry {name!r} goes through the non-directory {'/'.join(prefix)}")
            self._dirs.add(prefix)

    def _clear(self, parts: tuple[str, ...], keep_dir: bool) -> bool:
        """Remove what an earlier entry put at this path; True if a directory stays."""
        path = self._path(parts)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(path)
            self._dirs = {d for d in self._dirs if d[: len(parts)] != parts}
            return False
        os.unlink(path)
        return False

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise HostileLayer(f"layer has more than {self.limits.max_entries} entries")
        name = member.name
        parts = _clean_parts(name, self.limits)
        if not parts:
            # the layer root itself: only its metadata applies
            if member.isdir():
                self._apply_meta(self._root, member, is_link=False)
                self._dir_times.append((self._root, int(member.mtime)))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, name)
            return
        self._ensure_parents(parts, name)
        path = self._path(parts)
        if member.isdir():
            if not self._clear(parts, keep_dir=True):
                os.mkdir(path, 0o700)
            self._dirs.add(parts)
            self._apply_meta(path, member, is_link=False)
            self._dir_times.append((path, int(member.mtime)))
            return
        self._clear(parts, keep_dir=False)
        if member.isreg():
            self._write_file(tar, member, path)
        elif member.issym():
            os.symlink(member.linkname, path)
            self._apply_meta(path, member, is_link=True)
        elif member.islnk():
            target = _clean_parts(member.linkname, self.limits)
            if not target:
                raise HostileLayer(f"hard link {name!r} points at the layer root")
            self._ensure_parents(target, member.linkname, create=False)
            source = self._path(target)
            try:
                st = os.lstat(source)
            except FileNotFoundError:
                raise HostileLayer(
                    f"hard link {name!r} -> {member.linkname!r}: target not in layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise HostileLayer(f"hard link {name!r} points at a directory")
            os.link(source, path, follow_symlinks=False)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
            self._apply_meta(path, member, is_link=False)
        elif member.isfifo():
            os.mkfifo(path, member.mode & 0o7777)
            self._apply_meta(path, member, is_link=False)
        else:
            raise HostileLayer(f"entry {name!r} has unsupported type {member.type!r}")

    def _whiteout(self, parts: tuple[str, ...], name: str) -> None:
        base = parts[-1]
        parent = parts[:-1]
        self._ensure_parents(parts, name)
        parent_path = self._path(parent)
        if base == OPAQUE_MARKER:
            os.setxattr(parent_path, OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # reserved names (AUFS hard-link dir): nothing to unpack
        hidden = base[len(WHITEOUT_PREFIX) :]
        if not hidden or hidden in (".", ".."):
            raise HostileLayer(f"invalid whiteout entry {name!r}")
        target = parent + (hidden,)
        self._clear(target, keep_dir=False)
        try:
            os.mknod(self._path(target), stat.S_IFCHR, os.makedev(0, 0))
        except OSError as exc:
            if exc.errno != errno.ENOTDIR:
                raise

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if member.issparse() or tar.fileobj is None:
                source = tar.extractfile(member)
                if source is not None:
                    with source:
                        while chunk := source.read(_CHUNK):
                            _write_all(fd, chunk)
            else:
                # straight from the tar stream: extractfile's buffered wrapper copies every
                # byte once more, which costs about a third of the unpack time
                left = member.size
                while left:
                    chunk = tar.fileobj.read(min(left, _CHUNK))
                    if not chunk:
                        raise HostileLayer(f"entry {member.name!r} is cut short")
                    _write_all(fd, chunk)
                    left -= len(chunk)
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            _set_xattrs(fd, member)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _apply_meta(self, path: str, member: tarfile.TarInfo, is_link: bool) -> None:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        if not is_link:
            os.chmod(path, member.mode & 0o7777)
        _set_xattrs(path, member)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def finish(self) -> None:
        # a directory's mtime changes as entries land in it: set them last, deepest first
        for path, mtime in reversed(self._dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _set_xattrs(target: int | str, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        attr = key[len("SCHILY.xattr.") :]
        # overlay's own attributes from a layer could redirect lookups outside the layer
        if attr.startswith("trusted.overlay.") or attr.startswith("user.overlay."):
            continue
        raw = value.encode("utf-8", "surrogateescape")
        try:
            if isinstance(target, int):
                os.setxattr(target, attr, raw)
            else:
                os.setxattr(target, attr, raw, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


def unpack_file(blob: Path, dest: Path, limits: UnpackLimits | None = None) -> UnpackResult:
    with open(blob, "rb") as raw:
        return unpack_layer(raw, dest, limits)
