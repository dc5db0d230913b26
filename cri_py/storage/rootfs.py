"""Container root filesystems: an overlay of the image layers with a per-container upper dir,
or (storage_driver "vfs") a plain copy for filesystems without overlay.

Layout under `<root>/rootfs`: `<id>/diff` (the writable layer; `upper` in containers made
before it had the name containers-storage gives it, which cAdvisor's CRI-O handler derives
from the rootfs path), `<id>/work`, `<id>/merged` (the rootfs), and `l/<short>` symlinks to
layer directories. The kernel copies mount options into one page, so
an image with many layers would not fit with long paths; the short links give ~40 bytes per
layer (about 90 layers), and beyond that the mount runs in a `mount` process whose working
directory is `l/`, with 17 bytes per layer (about 230 layers; images allow 127).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cri_py.config.model import Config
from cri_py.errors import Internal, InvalidArgument
from cri_py.fsusage import TreeUsage, directory_usage
from cri_py.storage import idmap
from cri_py.storage import mount as sysmount
from cri_py.storage.trash import Trash

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class UsernsMapping:
    """A pod's user namespace as the rootfs needs it: its pin and its root's host ids."""

    path: Path
    root_uid: int
    root_gid: int


class RootfsManager:
    def __init__(self, config: Config) -> None:
        self.driver = config.storage_driver
        if self.driver not in ("overlay", "vfs"):
            raise InvalidArgument(f"unknown storage_driver {self.driver!r} (overlay or vfs)")
        self.base = config.root / "rootfs"
        self.links = self.base / "l"
        self.empty = self.base / "empty"
        # a container's directory comes and goes right below base; its files change deeper
        self.tree_usage = TreeUsage(self.base, depth=0)
        # removed writable layers wait here for a worker thread (storage/trash.py)
        self.trash = Trash(config.root / "trash")

    def mountpoint(self) -> Path:
        """The directory holding the containers' writable layers (for ImageFsInfo)."""
        return self.base

    def _dir(self, container_id: str) -> Path:
        if not _ID.match(container_id):
            raise InvalidArgument(f"invalid container id {container_id!r} for a rootfs")
        return self.base / container_id

    def rootfs_path(self, container_id: str) -> Path:
        return self._dir(container_id) / "merged"

    def mount(self, container_id: str, layer_dirs: list[Path], userns: UsernsMapping | None = None) -> Path:
        """Mount (or copy) the layers, bottom -> top, as the container's rootfs; idempotent.

        With `userns` (a user namespace pin and the host ids of its root) the layers are
        idmapped with its mappings, so the image's files belong to the namespace's users,
        and the writable layer's top directory to its root."""
        cdir = self._dir(container_id)
        merged = cdir / "merged"
        if self.driver == "vfs":
            if userns is not None:
                raise InvalidArgument("user namespaces need the overlay storage driver")
            return self._vfs(cdir, merged, layer_dirs)
        if sysmount.is_mountpoint(merged):
            return merged
        upper = _upper_dir(cdir)
        for d in (upper, cdir / "work", merged, self.links, self.empty):
            d.mkdir(parents=True, exist_ok=True)
        if userns is not None:
            return self._mount_idmapped(container_id, cdir, merged, layer_dirs, userns)
        names = [self._short_link(d) for d in reversed(layer_dirs)] or [self._short_link(self.empty)]
        tail = f",upperdir={upper},workdir={cdir / 'work'}"
        data = "lowerdir=" + ":".join(str(self.links / n) for n in names) + tail
        try:
            if len(data) <= sysmount.MOUNT_DATA_MAX:
                sysmount.mount("overlay", merged, "overlay", 0, data)
            else:
                self._mount_relative(names, cdir, merged)
        except OSError as exc:
            raise Internal(f"cannot mount the rootfs of {container_id}: {exc}") from exc
        return merged

    def _mount_idmapped(
        self, container_id: str, cdir: Path, merged: Path, layer_dirs: list[Path], userns: UsernsMapping
    ) -> Path:
        # the container's root writes its files into the upper dir through the overlay as the
        # host id it maps to; the upper dir's top belongs to it like the image's /
        os.chown(_upper_dir(cdir), userns.root_uid, userns.root_gid)
        layers = list(reversed(layer_dirs)) or [self.empty]
        try:
            with idmap.idmapped_layers(layers, cdir / "idmap", userns.path) as names:
                self._mount_in(cdir / "idmap", names, cdir, merged)
        except OSError as exc:
            raise Internal(f"cannot mount the idmapped rootfs of {container_id}: {exc}") from exc
        return merged

    def _short_link(self, layer_dir: Path) -> str:
        name = hashlib.sha256(str(layer_dir).encode()).hexdigest()[:16]
        link = self.links / name
        if not link.is_symlink():
            # a name of this call's own: concurrent creates of one image link the same layers
            tmp = self.links / f".tmp-{secrets.token_hex(8)}-{name}"
            os.symlink(layer_dir, tmp)
            try:
                os.replace(tmp, link)  # atomic: a link another thread made is replaced by an equal one
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return name

    def _mount_relative(self, names: list[str], cdir: Path, merged: Path) -> None:
        self._mount_in(self.links, names, cdir, merged)

    def _mount_in(self, cwd: Path, names: list[str], cdir: Path, merged: Path) -> None:
        """The overlay with the lower dirs named relative to `cwd` (mount(8) run there)."""
        sysmount.overlay_in(cwd, names, merged, [f"upperdir={_upper_dir(cdir)}", f"workdir={cdir / 'work'}"])

    def unmount(self, container_id: str) -> None:
        """Unmount the rootfs; idempotent. A busy mount is detached lazily."""
        merged = self._dir(container_id) / "merged"
        if self.driver == "vfs":
            return
        while sysmount.is_mountpoint(merged):
            try:
                sysmount.umount(merged)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    break
                if exc.errno != errno.EBUSY:
                    raise Internal(f"cannot unmount the rootfs of {container_id}: {exc}") from exc
                sysmount.umount(merged, sysmount.MNT_DETACH | sysmount.UMOUNT_NOFOLLOW)

    def remove(self, container_id: str) -> None:
        """Unmount the writable layer and move it to the trash; idempotent."""
        self.unmount(container_id)
        cdir = self._dir(container_id)
        # idmapped layer mounts a crash left between mounting them and the overlay (before
        # the recursive delete below, which must not reach into a layer through one)
        try:
            idmap.release(cdir / "idmap")
        except OSError as exc:
            raise Internal(f"cannot release the idmapped layers of {container_id}: {exc}") from exc
        self.trash.move(cdir)

    def usage(self, container_id: str) -> tuple[int, int]:
        """Bytes and inodes of the container's writable layer."""
        cdir = self._dir(container_id)
        return directory_usage(cdir / "merged" if self.driver == "vfs" else _upper_dir(cdir))

    def container_ids(self) -> list[str]:
        if not self.base.is_dir():
            return []
        return [p.name for p in self.base.iterdir() if _ID.match(p.name) and p.name not in ("l", "empty")]

    # vfs: a full copy, whiteouts applied layer by layer

    def _vfs(self, cdir: Path, merged: Path, layer_dirs: list[Path]) -> Path:
        done = cdir / ".complete"
        if done.exists():
            return merged
        if merged.exists():
            shutil.rmtree(merged)
        merged.mkdir(parents=True)
        try:
            for layer in layer_dirs:
                whiteouts, opaques = _scan_markers(layer)
                for rel in opaques:
                    target = merged / rel
                    if target.is_dir() and not target.is_symlink():
                        for child in target.iterdir():
                            _remove(child)
                for rel in whiteouts:
                    _remove(merged / rel)
                proc = subprocess.run(
                    ["cp", "-a", "--no-target-directory", str(layer), str(merged)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise Internal(f"copying layer {layer} failed: {proc.stderr.strip()}")
                for rel in whiteouts:
                    _remove(merged / rel)
        except BaseException:
            shutil.rmtree(merged, ignore_errors=True)
            raise
        done.touch()
        return merged


def _upper_dir(cdir: Path) -> Path:
    legacy = cdir / "upper"
    return legacy if legacy.is_dir() else cdir / "diff"


def _scan_markers(layer: Path) -> tuple[list[str], list[str]]:
    whiteouts: list[str] = []
    opaques: list[str] = []
    for dirpath, dirnames, filenames in os.walk(layer):
        rel_dir = os.path.relpath(dirpath, layer)
        try:
            if os.getxattr(dirpath, _OPAQUE_XATTR, follow_symlinks=False) == b"y" and rel_dir != ".":
                opaques.append(rel_dir)
        except OSError:
            pass
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                whiteouts.append(os.path.normpath(os.path.join(rel_dir, name)))
    return whiteouts, opaques


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
