"""Image volumes (kubelet's ImageVolume): a `Mount` with `image` set shows that image's root
filesystem, read-only, at the mount's container path.

Each such mount is a read-only overlay of the image's layers on the host, at
`<run_dir>/image-volumes/<container id>/<mount index>` (ro, nosuid, nodev, noexec, as the
ImageVolume KEP asks), bind-mounted into the container like any other mount; `image_sub_path`
binds a directory inside it, resolved within the image (a symlink cannot lead out). The
container's record names the images it mounts, so RemoveImage refuses them while the
container exists (as CRI-O does); the mounts go when the container is removed, and with the
run directory at a reboot. The image must be present: kubelet pulls it first.

In a pod with a user namespace of its own the overlay is made of idmapped layers, as that
pod's root filesystems are, so the image's files belong to the namespace's users.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cri_py.api import api_pb2
from cri_py.errors import Internal, InvalidArgument, NotFound
from cri_py.image.model import ImageRecord
from cri_py.image.service import ImageService
from cri_py.storage import idmap
from cri_py.storage import mount as sysmount

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
# symlinks followed while resolving a sub path, as the kernel's own limit
MAX_SYMLINKS = 40


@dataclass(frozen=True)
class ImageVolume:
    index: int  # the mount's position in ContainerConfig.mounts
    image: ImageRecord
    sub_path: str


class ImageVolumes:
    def __init__(self, images: ImageService, run_dir: Path, empty_dir: Path) -> None:
        self.images = images
        self.base = run_dir / "image-volumes"
        # overlayfs without an upper dir needs two lower dirs: an image of one layer gets this
        self.empty_dir = empty_dir

    def resolve(self, config: api_pb2.ContainerConfig) -> list[ImageVolume]:
        """The image mounts of a container config, each image looked up (NotFound if absent)."""
        out = []
        for index, m in enumerate(config.mounts):
            if not m.HasField("image") or not m.image.image:
                continue
            if m.host_path:
                raise InvalidArgument(f"mount {m.container_path!r}: give host_path or image, not both")
            if not m.container_path:
                raise InvalidArgument(f"image mount of {m.image.image!r} needs a container_path")
            sub = m.image_sub_path
            if sub and (os.path.isabs(sub) or ".." in Path(sub).parts):
                raise InvalidArgument(f"image_sub_path {sub!r} must be relative, without '..'")
            image = self.images.status(m.image.image)
            if image is None:
                raise NotFound(
                    f"image volume {m.image.image!r} for {m.container_path!r}: the image is not present; pull it first"
                )
            out.append(ImageVolume(index, image, sub))
        return out

    def mount(self, cid: str, volumes: list[ImageVolume], userns: Path | None = None) -> dict[int, str]:
        """Mount each volume for the container (blocking); returns the host source per mount
        index. With `userns` (the pin of the pod's user namespace) the layers are idmapped."""
        sources: dict[int, str] = {}
        for vol in volumes:
            target = self.base / cid / str(vol.index)
            target.mkdir(parents=True, exist_ok=True)
            if not sysmount.is_mountpoint(target):
                if userns is None:
                    self._mount_overlay(vol, target)
                else:
                    self._mount_idmapped_overlay(vol, target, userns)
            sources[vol.index] = str(
                secure_join(target, vol.sub_path, vol.image.id) if vol.sub_path else target
            )
        return sources

    def _mount_overlay(self, vol: ImageVolume, target: Path) -> None:
        self.empty_dir.mkdir(parents=True, exist_ok=True)
        # short links keep many layers within one page of mount options
        lowers = [str(p) for p in reversed(self.images.layer_links(vol.image))] + [str(self.empty_dir)]
        data = "lowerdir=" + ":".join(lowers)
        if len(data) > sysmount.MOUNT_DATA_MAX:
            raise Internal(
                f"image volume {vol.image.id}: {len(lowers) - 1} layers do not fit one overlay mount"
            )
        try:
            sysmount.mount("overlay", target, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, data)
        except OSError as exc:
            raise Internal(f"cannot mount image volume {vol.image.id}: {exc}") from exc

    def _mount_idmapped_overlay(self, vol: ImageVolume, target: Path, userns: Path) -> None:
        self.empty_dir.mkdir(parents=True, exist_ok=True)
        layers = [*reversed(self.images.layer_dirs(vol.image)), self.empty_dir]
        staging = _staging(target)
        try:
            with idmap.idmapped_layers(layers, staging, userns) as names:
                sysmount.overlay_in(staging, names, target, ["ro", "nosuid", "nodev", "noexec"])
        except OSError as exc:
            raise Internal(f"cannot mount image volume {vol.image.id} idmapped: {exc}") from exc

    def remove(self, cid: str) -> None:
        """Unmount and delete the container's image volumes (blocking); idempotent."""
        cdir = self.base / cid
        if not cdir.is_dir():
            return
        # idmapped layer binds a crash left behind go first: the delete below must not reach
        # through one into an image's layer
        for staging in cdir.glob(".idmap-*"):
            try:
                idmap.release(staging)
            except OSError as exc:
                raise Internal(f"cannot release the idmapped layers in {staging}: {exc}") from exc
        for target in cdir.iterdir():
            while sysmount.is_mountpoint(target):
                try:
                    sysmount.umount(target)
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise Internal(f"cannot unmount image volume {target}: {exc}") from exc
                    sysmount.umount(target, sysmount.MNT_DETACH | sysmount.UMOUNT_NOFOLLOW)
        shutil.rmtree(cdir, ignore_errors=True)

    def container_ids(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return [p.name for p in self.base.iterdir()]
        return []


def _staging(target: Path) -> Path:
    """Where a volume's idmapped layers are bound while its overlay is mounted over them."""
    return target.with_name(f".idmap-{target.name}")


def secure_join(root: Path, sub_path: str, image: str) -> Path:
    """`root/sub_path` with every symlink resolved as if `root` were `/`: the result stays
    inside `root`. The directory must exist (the image is read-only: nothing is created)."""
    parts = [p for p in sub_path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    followed = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            followed += 1
            if followed > MAX_SYMLINKS:
                raise InvalidArgument(f"image_sub_path {sub_path!r} in {image}: too many symlinks")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    final = root.joinpath(*resolved)
    if not final.is_dir():
        raise NotFound(f"image_sub_path {sub_path!r} does not exist (as a directory) in image {image}")
    return final
