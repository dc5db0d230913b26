"""Build images from local files, byte-reproducibly: fixed owners, mtimes and gzip headers.

Used for the pause image at daemon start and by `hack/build-test-images`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri_py.image import mediatypes as mt

EPOCH = 0


@dataclass
class Entry:
    """One tar entry: a directory, a file (with content or from a host path), a link or a whiteout."""

    name: str
    kind: str = "file"  # file | dir | symlink | hardlink | chr
    data: bytes = b""
    source: Path | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)


def tar_bytes(entries: list[Entry], mtime: int = EPOCH) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mtime = mtime
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            info.mode = e.mode
            if e.xattrs:
                info.pax_headers = {
                    f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in e.xattrs.items()
                }
            payload: bytes | None = None
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = e.linkname
            elif e.kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = e.linkname
            elif e.kind == "chr":
                info.type = tarfile.CHRTYPE
            else:
                payload = e.source.read_bytes() if e.source is not None else e.data
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    # mtime=0 and no file name keep the output identical on every build
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=level, mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class BuiltLayer:
    blob: bytes  # as stored in the registry (possibly compressed)
    diff_id: str
    media_type: str


def layer(entries: list[Entry], compress: bool = True) -> BuiltLayer:
    raw = tar_bytes(entries)
    if compress:
        return BuiltLayer(gzip_bytes(raw), digest_of(raw), mt.OCI_LAYER_GZIP)
    return BuiltLayer(raw, digest_of(raw), mt.OCI_LAYER)


_DOCKER_LAYER_TYPES = {
    mt.OCI_LAYER: mt.DOCKER_LAYER,
    mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP,
    mt.OCI_LAYER_ZSTD: mt.DOCKER_LAYER_ZSTD,
}


@dataclass
class BuiltImage:
    manifest: bytes
    config: bytes
    layers: list[BuiltLayer]

    @property
    def media_type(self) -> str:
        return str(json.loads(self.manifest)["mediaType"])

    @property
    def manifest_digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)


def image(
    layers: list[BuiltLayer],
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    user: str = "",
    working_dir: str = "",
    architecture: str = "amd64",
    os_name: str = "linux",
    variant: str = "",
    labels: dict[str, str] | None = None,
    stop_signal: str = "",
    docker: bool = False,
) -> BuiltImage:
    """An image manifest in OCI form, or Docker's schema 2 form with `docker=True`."""
    container_config: dict[str, Any] = {
        "Env": env
        if env is not None
        else ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    }
    if entrypoint:
        container_config["Entrypoint"] = entrypoint
    if cmd:
        container_config["Cmd"] = cmd
    if user:
        container_config["User"] = user
    if working_dir:
        container_config["WorkingDir"] = working_dir
    if labels:
        container_config["Labels"] = labels
    if stop_signal:
        container_config["StopSignal"] = stop_signal
    config: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "created": "1970-01-01T00:00:00Z",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cri-py build"} for _ in layers],
    }
    if variant:
        config["variant"] = variant
    config_bytes = canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
            "digest": digest_of(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": _DOCKER_LAYER_TYPES.get(lay.media_type, lay.media_type)
                if docker
                else lay.media_type,
                "digest": digest_of(lay.blob),
                "size": len(lay.blob),
            }
            for lay in layers
        ],
    }
    return BuiltImage(canonical_json(manifest), config_bytes, layers)


def index(entries: list[tuple[BuiltImage, dict[str, str]]]) -> bytes:
    """An OCI image index over images with their platform dicts."""
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": img.manifest_digest,
                    "size": len(img.manifest),
                    "platform": platform,
                }
                for img, platform in entries
            ],
        }
    )


def pause_image(catatonit: Path) -> BuiltImage:
    """The infra container image: catatonit alone, as `catatonit -P` (pause mode)."""
    entries = [Entry("catatonit", source=catatonit, mode=0o755)]
    return image(
        [layer(entries, compress=False)],
        entrypoint=["/catatonit", "-P"],
        env=[],
        labels={"io.cri-py.pause": "true"},
        stop_signal="SIGINT",
    )
