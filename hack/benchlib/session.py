"""One cri-py daemon under a wrapper (span recorder, memory tracer), its registry, bridge and
guard, for the cri-py-only modes (--spans, --memory): started in order, and everything removed
again in the reverse order, also when the measuring fails; what is left is logged and kept in
`Session.left` for the caller's exit status."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from benchlib.cri import CriClient
from benchlib.cripy import CriPyDaemon
from benchlib.network import add_guard, bench_net, remove_guard
from benchlib.registry import LocalRegistry
from benchlib.runtimes import leftovers
from benchlib.util import log

Images = TypeVar("Images")


@dataclass
class Session(Generic[Images]):
    daemon: CriPyDaemon
    client: CriClient
    images: Images
    left: list[str] = field(default_factory=list)


@contextlib.contextmanager
def wrapped_cripy(
    workdir: Path,
    wrapper: list[str],
    push_images: Callable[[LocalRegistry], Images],
    busybox_of: Callable[[Images], str],
) -> Iterator[Session[Images]]:
    """cri-py (run by `wrapper`) serving images `push_images` put in a registry of its own; the
    client is ready. Pods the client made are removed on the way out, then the daemon,
    registry, bridge and guard rule, and the leftovers are looked for."""
    cgroup_parent = f"/cri-bench-{os.getpid()}"
    registry = LocalRegistry(workdir / "registry")
    net = bench_net("cripy", 1, workdir)
    daemon = CriPyDaemon(workdir / "cri-py", "", net, cgroup_parent, wrapper=wrapper)
    left: list[str] = []
    add_guard()
    try:
        registry.start()
        images = push_images(registry)
        daemon.registry_host = registry.host
        daemon.start()
        client = CriClient(daemon.endpoint, busybox_of(images), workdir / "pod-logs", cgroup_parent)
        try:
            client.wait_ready()
            yield Session(daemon, client, images, left)
        finally:
            client.remove_bench_pods()
            client.close()
    finally:
        daemon.stop()
        registry.stop()
        net.remove_bridge()
        remove_guard()
        left += leftovers(workdir, cgroup_parent, [net.bridge])
        if left:
            log(f"LEFT BEHIND: {left}")
