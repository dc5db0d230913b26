"""The layer unpacker: formats, metadata, whiteouts, and hostile tars."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from cri_py.errors import Internal
from cri_py.image.build import Entry, gzip_bytes, tar_bytes
from cri_py.image.unpack import OPAQUE_XATTR, HostileLayer, UnpackLimits, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and trusted xattrs need root")


def unpack(data: bytes, dest: Path, **limits: int) -> str:
    dest.mkdir(exist_ok=True)
    return unpack_layer(io.BytesIO(data), dest, UnpackLimits(**limits)).diff_id


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_formats_give_the_same_diff_id(tmp_path: Path) -> None:
    raw = tar_bytes(
        [Entry("a", data=b"hello"), Entry("d", "dir", mode=0o755), Entry("d/b", data=b"x" * 5000)]
    )
    zstd_multi = zstandard.ZstdCompressor().compress(raw[:700]) + zstandard.ZstdCompressor().compress(
        raw[700:]
    )
    gzip_multi = gzip.compress(raw[:900], mtime=0) + gzip.compress(raw[900:], mtime=0)
    for i, blob in enumerate([raw, gzip_bytes(raw), zstd_multi, gzip_multi]):
        dest = tmp_path / str(i)
        assert unpack(blob, dest) == sha(raw)
        assert (dest / "a").read_bytes() == b"hello"
        assert (dest / "d" / "b").read_bytes() == b"x" * 5000


def test_metadata_is_preserved(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("dir")
        d.type, d.mode, d.uid, d.gid, d.mtime = tarfile.DIRTYPE, 0o750, 12, 34, 1000
        tar.addfile(d)
        f = tarfile.TarInfo("dir/suid")
        f.mode, f.uid, f.gid, f.mtime, f.size = 0o4755, 1000, 1000, 2000, 3
        f.pax_headers = {"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.redirect": "/etc"}
        tar.addfile(f, io.BytesIO(b"abc"))
        h = tarfile.TarInfo("dir/hard")
        h.type, h.linkname = tarfile.LNKTYPE, "dir/suid"
        tar.addfile(h)
        s = tarfile.TarInfo("abs-link")
        s.type, s.linkname, s.mtime = tarfile.SYMTYPE, "/etc/passwd", 3000
        tar.addfile(s)
        c = tarfile.TarInfo("null")
        c.type, c.devmajor, c.devminor, c.mode = tarfile.CHRTYPE, 1, 3, 0o666
        tar.addfile(c)
        p = tarfile.TarInfo("fifo")
        p.type, p.mode = tarfile.FIFOTYPE, 0o600
        tar.addfile(p)
    dest = tmp_path / "out"
    unpack(buf.getvalue(), dest)
    st = os.lstat(dest / "dir" / "suid")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o4755, 1000, 1000, 2000)
    assert os.getxattr(dest / "dir" / "suid", "user.note") == b"hi"
    with pytest.raises(OSError):
        os.getxattr(dest / "dir" / "suid", "trusted.overlay.redirect")
    assert os.lstat(dest / "dir" / "hard").st_ino == st.st_ino
    dst = os.lstat(dest / "dir")
    assert (stat.S_IMODE(dst.st_mode), dst.st_uid, dst.st_gid, int(dst.st_mtime)) == (0o750, 12, 34, 1000)
    assert os.readlink(dest / "abs-link") == "/etc/passwd"
    assert int(os.lstat(dest / "abs-link").st_mtime) == 3000
    null = os.lstat(dest / "null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)


def test_whiteouts_become_overlay_markers(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            Entry("etc", "dir", mode=0o755),
            Entry("etc/.wh.gone", data=b""),
            Entry("opq", "dir", mode=0o755),
            Entry("opq/.wh..wh..opq", data=b""),
            Entry("opq/new", data=b"n"),
            Entry("implicit/.wh..wh..opq", data=b""),
            Entry(".wh..wh.plnk", "dir", mode=0o700),
        ]
    )
    dest = tmp_path / "out"
    unpack(data, dest)
    gone = os.lstat(dest / "etc" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "opq", OPAQUE_XATTR) == b"y"
    assert os.getxattr(dest / "implicit", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(dest / "opq")) == ["new"]
    assert sorted(os.listdir(dest)) == ["etc", "implicit", "opq"]


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    data = tar_bytes(
        [
            Entry("x", data=b"first"),
            Entry("x", data=b"second"),
            Entry("d", "dir"),
            Entry("d/f", data=b"f"),
            Entry("d", "symlink", linkname="elsewhere"),
            Entry("l", "symlink", linkname="a"),
            Entry("l", "dir", mode=0o755),
            Entry("l/ok", data=b"ok"),
        ]
    )
    dest = tmp_path / "out"
    unpack(data, dest)
    assert (dest / "x").read_bytes() == b"second"
    assert os.readlink(dest / "d") == "elsewhere"
    assert (dest / "l" / "ok").read_bytes() == b"ok"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry("../x", data=b"")], "climbs out"),
        ([Entry("a/../../x", data=b"")], "climbs out"),
        ([Entry("s", "symlink", linkname="/"), Entry("s/x", data=b"")], "symlink s"),
        ([Entry("d", "dir"), Entry("d", "symlink", linkname="/tmp"), Entry("d/x", data=b"")], "symlink d"),
        ([Entry("f", data=b""), Entry("f/x", data=b"")], "non-directory f"),
        ([Entry("h", "hardlink", linkname="../../etc/passwd")], "climbs out"),
        ([Entry("h", "hardlink", linkname="nothing")], "not in layer"),
        ([Entry("s", "symlink", linkname="/etc"), Entry("h", "hardlink", linkname="s/passwd")], "symlink s"),
        ([Entry("d", "dir"), Entry("h", "hardlink", linkname="d")], "directory"),
        ([Entry("d/.wh.", data=b"")], "invalid whiteout"),
    ],
)
def test_hostile_entries_are_refused(tmp_path: Path, entries: list[Entry], message: str) -> None:
    with pytest.raises(HostileLayer, match=message):
        unpack(tar_bytes(entries), tmp_path / "layer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer"]


def test_absolute_names_stay_inside(tmp_path: Path) -> None:
    unpack(tar_bytes([Entry("/abs/file", data=b"in")]), tmp_path / "layer")
    assert (tmp_path / "layer" / "abs" / "file").read_bytes() == b"in"


def test_bounds(tmp_path: Path) -> None:
    many = tar_bytes([Entry(f"f{i}", data=b"") for i in range(20)])
    with pytest.raises(HostileLayer, match="more than 10 entries"):
        unpack(many, tmp_path / "a", max_entries=10)
    big = gzip_bytes(tar_bytes([Entry("zeros", data=bytes(1 << 20))]))
    assert len(big) < 10_000
    with pytest.raises(HostileLayer, match="more than"):
        unpack(big, tmp_path / "b", max_bytes=100_000)


def test_garbage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Internal):
        unpack(b"\x1f\x8b" + b"not gzip at all" * 10, tmp_path / "a")
    with pytest.raises(Internal):
        unpack(tar_bytes([Entry("f", data=b"x" * 4000)])[:1500], tmp_path / "b")
