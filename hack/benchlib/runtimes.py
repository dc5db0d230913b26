"""cri-py and its peers started side by side for one bench run, and everything removed afterwards.

Each runtime gets its own directory, socket, bridge and /24 in 10.251.0.0/16 (behind one FORWARD
guard), the same runc, conmon, CNI plugins, local registry and images:

    cri-py          10.251.1.0/24  cribcripy1
    containerd 2.x  10.251.2.0/24  cribctrd2     (hack/peers/build, the runc shim of the same build)
    (floor)         10.251.3.0/24  cribfloor3    (runc and the CNI bridge plugin by hand)
    CRI-O 1.36      10.251.4.0/24  cribcrio4     (hack/peers/build, with its pinns)
    containerd 1.6  10.251.5.0/24  cribctrd165   (Debian's, with --debian-containerd)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchlib.cri import CriClient
from benchlib.crio import CrioPeer
from benchlib.cripy import CriPyDaemon
from benchlib.images import BenchImages, push_bench_images
from benchlib.measure import Target
from benchlib.network import BenchNet, add_guard, bench_net, remove_guard
from benchlib.peer import DEBIAN_16, ContainerdPeer, built_2x
from benchlib.registry import LocalRegistry
from benchlib.util import log, mounts_under, pids_mentioning, remove_cgroup_tree

PEERS = ("containerd", "cri-o")  # the peers every target is a ratio to (the best of them)
EXTRA_PEERS = ("containerd-1.6",)  # a column of its own, not a target


class Daemon(Protocol):
    pid: int
    workdir: Path

    @property
    def endpoint(self) -> str: ...

    def start(self) -> None: ...

    def stop(self, remove: bool = True) -> None: ...


@dataclass
class Runtimes:
    registry: LocalRegistry
    images: BenchImages
    targets: list[Target] = field(default_factory=list)
    daemons: dict[str, Daemon] = field(default_factory=dict)

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)


def leftovers(workdir: Path, cgroup_parent: str, bridges: list[str]) -> list[str]:
    found = [f"mount {m}" for m in mounts_under(workdir)]
    found += [f"process {p}" for p in pids_mentioning(str(workdir)) if p != os.getpid()]
    found += [f"cgroup {c}" for c in remove_cgroup_tree(cgroup_parent)]
    found += [f"bridge {b}" for b in bridges if Path(f"/sys/class/net/{b}").exists()]
    return found


def _make(
    name: str,
    workdir: Path,
    registry: LocalRegistry,
    images: BenchImages,
    cgroup_parent: str,
    wrapper: list[str],
    mirrors: tuple[str, ...],
    clamp_oom: bool,
) -> tuple[Daemon, BenchNet]:
    if name == "cri-py":
        net = bench_net("cripy", 1, workdir)
        return CriPyDaemon(
            workdir / "cri-py", registry.host, net, cgroup_parent, wrapper=wrapper, mirrors=mirrors
        ), net
    if name == "containerd":
        net = bench_net("ctrd", 2, workdir)
        return ContainerdPeer(
            workdir / "containerd", registry.host, images.pause, net, build=built_2x(), mirrors=mirrors
        ), net
    if name == "cri-o":
        net = bench_net("crio", 4, workdir)
        return CrioPeer(
            workdir / "cri-o", registry.host, images.pause, net, mirrors=mirrors, clamp_oom=clamp_oom
        ), net
    if name == "containerd-1.6":
        net = bench_net("ctrd16", 5, workdir)
        return ContainerdPeer(
            workdir / "containerd-1.6", registry.host, images.pause, net, build=DEBIAN_16
        ), net
    raise ValueError(f"unknown runtime {name!r}")


@contextlib.contextmanager
def started(
    workdir: Path,
    cgroup_parent: str,
    names: list[str],
    result: dict[str, Any],
    wrapper: list[str] | None = None,
    mirrors: tuple[str, ...] = (),
    crio_clamp_oom: bool = False,
    keep_logs: Path | None = None,
) -> Iterator[Runtimes]:
    """The registry with the bench images, then every runtime in `names`, each pulled busybox once.

    On the way out it stops them all and records in result["leftovers"] whatever is still there.
    """
    registry = LocalRegistry(workdir / "registry")
    nets: list[BenchNet] = []
    daemons: dict[str, Daemon] = {}
    clients: list[CriClient] = []
    add_guard()
    try:
        registry.start()
        log(f"registry on {registry.host}; building and pushing the test images")
        images = push_bench_images(registry)
        result["images"] = {"busybox": images.busybox, "pause": images.pause, "big": images.big}
        runtimes = Runtimes(registry, images)
        for name in names:
            daemon, net = _make(
                name, workdir, registry, images, cgroup_parent, wrapper or [], mirrors, crio_clamp_oom
            )
            nets.append(net)
            t0 = time.monotonic()
            daemon.start()
            daemons[name] = daemon
            log(f"{name}: pid {daemon.pid} on {daemon.endpoint} (started in {time.monotonic() - t0:.1f} s)")
            client = CriClient(daemon.endpoint, images.busybox, workdir / "pod-logs" / name, cgroup_parent)
            clients.append(client)
            client.wait_ready()
            runtimes.targets.append(Target(name, client, daemon.pid, [str(daemon.workdir)], images.big))
        runtimes.daemons = daemons
        result["versions"] = {t.name: t.client.version() for t in runtimes.targets}
        for target in runtimes.targets:
            t0 = time.perf_counter()
            target.client.pull(images.busybox)
            log(f"  {target.name}: pulled busybox in {(time.perf_counter() - t0) * 1000:.0f} ms")
            if target.name != "cri-py":
                target.client.pull(images.pause)  # a pause image, as kubelet's node would have it
        yield runtimes
    finally:
        for client in clients:
            client.close()
        if keep_logs is not None:
            # each daemon's own log, for whoever reads a failure afterwards
            keep_logs.mkdir(parents=True, exist_ok=True)
            for name, daemon in daemons.items():
                for log_file in daemon.workdir.glob("*.log"):
                    shutil.copyfile(log_file, keep_logs / f"{name}-{log_file.name}")
        for daemon in daemons.values():
            try:
                daemon.stop()
            except Exception as err:  # noqa: BLE001 - the others must still stop
                log(f"stopping {daemon.workdir.name} failed: {err}")
        registry.stop()
        for net in nets:
            net.remove_bridge()
        remove_guard()
        left = leftovers(workdir, cgroup_parent, [n.bridge for n in nets])
        result["leftovers"] = left
        if left:
            log(f"LEFT BEHIND: {left}")
