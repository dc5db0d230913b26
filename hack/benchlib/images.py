"""The bench's images, built from Debian binaries so no network is needed.

The shared test images come from hack/build-test-images (busybox, and `bench`: 100 MB in five
layers). Here: the pause image containerd needs (catatonit, the same binary cri-py's infra runs)
and the busybox rootfs of the runc floor. Byte-reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from benchlib.registry import Layer, LocalRegistry

BUSYBOX = Path("/bin/busybox")
CATATONIT = Path("/usr/bin/catatonit")
_CREATED = "2024-01-01T00:00:00Z"


@dataclass(frozen=True)
class BenchImages:
    busybox: str
    pause: str
    big: str


def _tar_layer(entries: list[tarfile.TarInfo], payloads: dict[str, bytes]) -> Layer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            data = payloads.get(info.name)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    packed = io.BytesIO()
    # level 1: the big layers are random anyway, and building must stay quick
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=1) as gz:
        gz.write(tar_bytes)
    return Layer(packed.getvalue(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest())


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, link, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def busybox_layer() -> Layer:
    binary = BUSYBOX.read_bytes()
    applets = (
        subprocess.run([str(BUSYBOX), "--list"], capture_output=True, check=True).stdout.decode().split()
    )
    entries = [_info(d, tarfile.DIRTYPE, 0o755) for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "var")]
    entries[5].mode = 0o1777
    entries.append(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)))
    # hard links, not symlinks: Debian's static busybox runs applets by argv[0]
    entries += [
        _info(f"bin/{a}", tarfile.LNKTYPE, 0o755, link="bin/busybox")
        for a in sorted(applets)
        if a != "busybox"
    ]
    etc = {"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "etc/group": b"root:x:0:\n"}
    entries += [_info(name, tarfile.REGTYPE, 0o644, len(data)) for name, data in etc.items()]
    return _tar_layer(entries, {"bin/busybox": binary, **etc})


def pause_layer() -> Layer:
    binary = CATATONIT.read_bytes()
    return _tar_layer([_info("catatonit", tarfile.REGTYPE, 0o755, len(binary))], {"catatonit": binary})


def _config(entrypoint: list[str], cmd: list[str]) -> dict[str, object]:
    return {
        "created": _CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": entrypoint, "Cmd": cmd, "WorkingDir": "/"},
    }


def push_bench_images(registry: LocalRegistry) -> BenchImages:
    """busybox and the 100 MB image from hack/build-test-images; a catatonit pause image of ours."""
    refs = registry.build_test_images(["busybox", "bench"])
    pause = registry.push_image("bench/pause", "3.10", [pause_layer()], _config(["/catatonit", "-P"], []))
    return BenchImages(refs["busybox"], pause, refs["bench"])
