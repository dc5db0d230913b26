"""Pick the manifest for this machine from an OCI index or Docker manifest list."""

from __future__ import annotations

import platform
from typing import Any

from cri_py.errors import NotFound


def host_platform() -> tuple[str, str, str]:
    machine = platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", "v8"),
        "arm64": ("arm64", "v8"),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", ""),
        "i386": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    return "linux", arch, variant


def select_platform(index: dict[str, Any], want: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """The index entry for this machine; an arm64 entry without a variant counts as v8."""
    os_name, arch, variant = want or host_platform()
    best: dict[str, Any] | None = None
    for entry in index.get("manifests") or []:
        if (entry.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        plat = entry.get("platform") or {}
        if plat.get("os") != os_name or plat.get("architecture") != arch:
            continue
        have = plat.get("variant", "")
        if have == variant:
            return dict(entry)
        if best is None and (not have or not variant or (arch == "arm64" and have == "v8")):
            best = entry
    if best is None:
        found = sorted(
            "/".join(
                filter(
                    None, ((e.get("platform") or {}).get(k, "") for k in ("os", "architecture", "variant"))
                )
            )
            for e in index.get("manifests") or []
        )
        want_text = "/".join(filter(None, (os_name, arch, variant)))
        raise NotFound(f"no image for platform {want_text} in the index (has: {', '.join(found) or 'none'})")
    return dict(best)
