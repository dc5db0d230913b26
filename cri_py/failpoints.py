"""Failpoints: named places where a test daemon can be made to die, as a crash would kill it.

In the spirit of etcd's gofail. `CRI_PY_FAILPOINTS=name[,name...]` in the daemon's environment,
read once when this module is first imported (at start), arms those points; reaching an armed
point writes one line to stderr and SIGKILLs the daemon: no `finally`, no atexit, no flush, as
the kernel's OOM killer or a power cut would. Unset, `hit` is a function that returns at once
and nothing else is looked at. Tests restart the daemon and check that it converges.
"""

from __future__ import annotations

import os
import signal
from typing import Final

ENV: Final = "CRI_PY_FAILPOINTS"

# RunPodSandbox: the CREATING record is committed, the network namespace not yet made
POD_SAVED_BEFORE_NETNS: Final = "pod-saved-before-netns"
# RunPodSandbox: CNI ADD has attached the pod, its record does not say READY yet
POD_NETWORK_ADDED_BEFORE_READY: Final = "pod-network-added-before-ready"
# CreateContainer: `runc create` (under conmon) has made the container, its record is CREATING
CONTAINER_CREATED_BEFORE_SAVED: Final = "container-created-before-saved"
# StopPodSandbox: CNI DEL has run, the network namespace and the record are as before
POD_STOP_AFTER_CNI_DEL: Final = "pod-stop-after-cni-del"
# RemoveContainer: the runtime has deleted the container, its rootfs, files and record remain
CONTAINER_REMOVE_MIDWAY: Final = "container-remove-midway"
# PullImage: a layer's first files are unpacked into its temporary directory
LAYER_UNPACK_MIDWAY: Final = "layer-unpack-midway"

KNOWN: Final = frozenset(
    {
        POD_SAVED_BEFORE_NETNS,
        POD_NETWORK_ADDED_BEFORE_READY,
        CONTAINER_CREATED_BEFORE_SAVED,
        POD_STOP_AFTER_CNI_DEL,
        CONTAINER_REMOVE_MIDWAY,
        LAYER_UNPACK_MIDWAY,
    }
)


def parse(value: str) -> frozenset[str]:
    return frozenset(name.strip() for name in value.split(",") if name.strip())


ARMED: Final = parse(os.environ.get(ENV, ""))


def unknown() -> list[str]:
    """Armed names no point has (a typo in a test): the daemon refuses to start with them."""
    return sorted(ARMED - KNOWN)


def _inert(name: str) -> None:
    return None


def _fire(name: str) -> None:
    if name in ARMED:
        # straight to the fd: a logging lock may be held by the thread this kills
        os.write(2, f"cri-py: failpoint {name} reached: killing the daemon\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)


hit = _fire if ARMED else _inert
