"""What an OCI runtime and this kernel can do, asked of them rather than assumed.

`runc features` (the OCI runtime-features document) lists the mount options a runtime
understands; `rro` (recursive read-only) also needs the kernel's mount_setattr(2) (5.12+).
"""

from __future__ import annotations

import ctypes
import errno
import json
import subprocess
from collections.abc import Sequence

SYS_MOUNT_SETATTR = 442  # the same number on every architecture's unified syscall table


def kernel_has_mount_setattr() -> bool:
    """mount_setattr(2) exists: called with nothing to do it fails with EINVAL, not ENOSYS."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_MOUNT_SETATTR, -1, b"", 0, None, 0) == 0:
        return True
    return ctypes.get_errno() != errno.ENOSYS


def runtime_mount_options(binary: str, global_args: Sequence[str] = ()) -> frozenset[str]:
    """The mount options `<binary> features` lists; empty where the runtime has no such command
    (runsc) or it fails."""
    try:
        done = subprocess.run(
            [binary, *global_args, "features"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if done.returncode != 0:
        return frozenset()
    try:
        document = json.loads(done.stdout)
    except ValueError:
        return frozenset()
    options = document.get("mountOptions") if isinstance(document, dict) else None
    return frozenset(str(o) for o in options) if isinstance(options, list) else frozenset()


def supports_recursive_read_only(binary: str, global_args: Sequence[str] = ()) -> bool:
    return kernel_has_mount_setattr() and "rro" in runtime_mount_options(binary, global_args)
