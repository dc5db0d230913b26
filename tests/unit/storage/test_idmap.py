"""Idmapped mounts against this kernel: a user namespace of the test's own, real mounts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_py.config.model import Config
from cri_py.storage import idmap
from cri_py.storage import mount as sysmount
from cri_py.storage.rootfs import RootfsManager, UsernsMapping

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")

CLONE_NEWUSER = 0x10000000
HOST_ID = 200000


@contextlib.contextmanager
def user_namespace(host_id: int = HOST_ID, size: int = 65536) -> Iterator[Path]:
    """A user namespace mapping 0..size-1 to host_id..: held by a process of its own until the
    end. A new program, not a fork of this one: a fork of a test process that has loaded gRPC
    gets gRPC's threads again in the child, and a multithreaded process can make no user
    namespace (EINVAL)."""
    holder = subprocess.Popen(
        ["unshare", "--user", "sh", "-c", "echo ready; read _"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "ready\n", "unshare --user failed"
        Path(f"/proc/{holder.pid}/uid_map").write_text(f"0 {host_id} {size}\n")
        Path(f"/proc/{holder.pid}/setgroups").write_text("deny")
        Path(f"/proc/{holder.pid}/gid_map").write_text(f"0 {host_id} {size}\n")
        yield Path(f"/proc/{holder.pid}/ns/user")
    finally:
        holder.stdin.close()
        holder.wait(10)


def test_idmapped_bind_shifts_owners(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "root-file").write_text("x")
    os.chown(src / "sub", 7, 8)
    target = tmp_path / "target"
    with user_namespace() as userns:
        assert idmap.supported(tmp_path, userns)
        idmap.idmapped_bind(src, target, userns)
        try:
            assert os.stat(target / "root-file").st_uid == HOST_ID
            st = os.stat(target / "sub")
            assert (st.st_uid, st.st_gid) == (HOST_ID + 7, HOST_ID + 8)
            # the source itself is untouched
            assert os.stat(src / "root-file").st_uid == 0
        finally:
            sysmount.umount(target, sysmount.MNT_DETACH)


def test_idmapped_bind_of_a_file(tmp_path: Path) -> None:
    src = tmp_path / "hosts"
    src.write_text("127.0.0.1 localhost\n")
    target = tmp_path / "bundle" / "hosts"
    with user_namespace() as userns:
        idmap.idmapped_bind(src, target, userns)
        try:
            assert target.read_text() == "127.0.0.1 localhost\n"
            assert os.stat(target).st_uid == HOST_ID
        finally:
            sysmount.umount(target, sysmount.MNT_DETACH)


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with user_namespace() as userns, pytest.raises(FileNotFoundError):
        idmap.idmapped_clone(tmp_path / "nope", userns)
    assert (
        "nope" not in subprocess.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True).stdout
    )


_AS_USERNS_ROOT = """
import ctypes, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
if ctypes.CDLL(None, use_errno=True).setns(fd, 0x10000000) != 0:
    sys.exit("setns: " + os.strerror(ctypes.get_errno()))
os.setgid(0)
os.setuid(0)
exec(sys.argv[2])
"""


def _as_userns_root(userns: Path, where: Path, work: str) -> int:
    """Run the Python `work` in `where` (its cwd, entered before: the test's own tmp dirs are
    closed to others) in a new process that joined the user namespace as its root (a new
    program, single-threaded, as setns needs); its exit status."""
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", _AS_USERNS_ROOT, str(userns), work], cwd=where
    ).returncode


def test_rootfs_on_idmapped_layers(tmp_path: Path) -> None:
    lower, upper_layer = tmp_path / "layers" / "a", tmp_path / "layers" / "b"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (upper_layer / "data").mkdir(parents=True)
    os.chown(upper_layer / "data", 33, 33)
    rootfs = RootfsManager(Config(root=tmp_path / "root"))
    cid = "c" * 64
    with user_namespace() as userns:
        merged = rootfs.mount(cid, [lower, upper_layer], UsernsMapping(userns, HOST_ID, HOST_ID))
        try:
            # the image's owners, shifted; the image's files themselves untouched
            assert os.stat(merged / "etc" / "passwd").st_uid == HOST_ID
            assert os.stat(merged / "data").st_uid == HOST_ID + 33
            assert os.stat(lower / "etc" / "passwd").st_uid == 0
            # the namespace's root writes at the top and over an image file (a copy-up)
            assert os.stat(merged).st_uid == HOST_ID

            write = "open('new', 'w').write('n'); open('etc/passwd', 'a').write('x:x:1:1::/:/bin/sh\\n')"
            assert _as_userns_root(userns, merged, write) == 0
            assert os.stat(merged / "new").st_uid == HOST_ID
            assert (lower / "etc" / "passwd").read_text() == "root:x:0:0::/:/bin/sh\n"
            # only the overlay stays mounted: the idmapped layer mounts are gone
            mounts = Path("/proc/self/mountinfo").read_text()
            assert str(tmp_path / "root") in mounts
            assert "idmap" not in mounts.replace(str(tmp_path), "")
            assert not (tmp_path / "root" / "rootfs" / cid / "idmap").exists()
        finally:
            rootfs.remove(cid)
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
