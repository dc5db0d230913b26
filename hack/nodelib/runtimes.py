"""The node's container runtime: cri-py, or containerd in its place to compare against.

containerd (2.x built by hack/peers, or Debian's 1.6) runs through the bench's ContainerdPeer
files, in the node's namespace like cri-py, with the same CNI network, the same registry (the
node's, mirroring the upstream hosts) and a pause image of the same catatonit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nodelib.components import MIRRORED_HOSTS, REGISTRY, Component, cni_conflist, cri_py
from nodelib.layout import Layout, Slot

RUNTIMES = ("cri-py", "containerd", "containerd-1.6")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # hack/upstream-images/node.py


def _bench_imports() -> None:
    hack = str(Path(__file__).resolve().parents[1])
    if hack not in sys.path:
        sys.path.insert(0, hack)


def socket(layout: Layout, runtime: str) -> Path:
    if runtime == "cri-py":
        return layout.cri_socket
    return layout.dir / "containerd" / "containerd.sock"


def containerd_peer(layout: Layout, slot: Slot, runtime: str):  # type: ignore[no-untyped-def]
    _bench_imports()
    from benchlib.network import BenchNet
    from benchlib.peer import DEBIAN_16, ContainerdPeer, built_2x

    net = BenchNet(f"cri-py-{slot.name}", slot.bridge, slot.pod_subnet, layout.dir / "containerd-ipam")
    build = DEBIAN_16 if runtime == "containerd-1.6" else built_2x()
    return ContainerdPeer(
        layout.dir / "containerd", REGISTRY, PAUSE_IMAGE, net, build=build, mirrors=MIRRORED_HOSTS
    )


def component(layout: Layout, slot: Slot, runtime: str) -> Component:
    """The runtime's process, its files written."""
    if runtime == "cri-py":
        return cri_py(layout)
    peer = containerd_peer(layout, slot, runtime)
    config = peer.write_files()
    # the same network as cri-py's pods get (bridge, subnet, plugins), its IPAM state apart
    conflist = cni_conflist(layout, slot)
    conflist["plugins"][0]["ipam"]["dataDir"] = str(layout.dir / "containerd-ipam")  # type: ignore[index]
    (peer.workdir / "cni-conf" / f"10-{peer.net.name}.conflist").write_text(json.dumps(conflist, indent=2))
    return Component("containerd", [str(peer.build.containerd), "--config", str(config)])


def cleanup(layout: Layout, slot: Slot | None, runtime: str) -> None:
    """What a stopped containerd leaves: shims, runc containers, mounts, its shared directories."""
    if runtime == "cri-py" or slot is None or not (layout.dir / "containerd").exists():
        return
    peer = containerd_peer(layout, slot, runtime)
    peer.stop(remove=True)
