"""Where a node's files live, and the names and addresses of its slot.

A slot N (0-15) gives a node its own names and a /20 of 10.215.0.0/16, the range reserved for
the node suite, so two clusters (a test session and an operator's) never collide:

    host <-> node link   10.215.16N.0/24     host side .1 on cripynd<N>h, the node .2 on eth0
    pod network          10.215.(16N+1).0/24 bridge cripynd<N> inside the node namespace
    service range        10.215.(16N+8).0/24 (no kube-proxy: only the API server's own address)
    cgroup root          /cripy-node-<N> in every hierarchy
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPERNET = "10.215.0.0/16"
SLOTS = range(16)
API_PORT = 6443
KUBELET_PORT = 10250
REGISTRY_PORT = 5000  # inside the node namespace: its loopback is the node's own


@dataclass(frozen=True)
class Slot:
    index: int

    @property
    def name(self) -> str:
        return f"cripy-node-{self.index}"

    @property
    def node_name(self) -> str:
        return self.name

    @property
    def host_veth(self) -> str:
        return f"cripynd{self.index}h"

    @property
    def bridge(self) -> str:
        return f"cripynd{self.index}"

    def _net(self, offset: int) -> str:
        return f"10.215.{16 * self.index + offset}"

    @property
    def host_address(self) -> str:
        return f"{self._net(0)}.1"

    @property
    def node_address(self) -> str:
        return f"{self._net(0)}.2"

    @property
    def link_prefix(self) -> int:
        return 24

    @property
    def pod_subnet(self) -> str:
        return f"{self._net(1)}.0/24"

    @property
    def service_range(self) -> str:
        return f"{self._net(8)}.0/24"

    @property
    def api_service_ip(self) -> str:
        return f"{self._net(8)}.1"

    @property
    def cgroup_root(self) -> str:
        return f"/{self.name}"

    @property
    def api_url(self) -> str:
        return f"https://{self.node_address}:{API_PORT}"


class Layout:
    """The paths of one node directory (`--dir`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()

    @property
    def state_file(self) -> Path:
        return self.dir / "node.json"

    @property
    def netns_pin(self) -> Path:
        return self.dir / "netns"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def kubeconfig(self, component: str) -> Path:
        return self.pki / f"{component}.kubeconfig"

    @property
    def cri_dir(self) -> Path:
        return self.dir / "cri-py"

    @property
    def cri_config(self) -> Path:
        return self.cri_dir / "cri-py.yaml"

    @property
    def cri_socket(self) -> Path:
        return self.cri_dir / "cri-py.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.cri_dir / "cni" / "net.d"

    @property
    def etcd_dir(self) -> Path:
        return self.dir / "etcd"

    @property
    def kubelet_dir(self) -> Path:
        return self.dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.dir / "kubelet-config.yaml"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def pod_logs(self) -> Path:
        return self.logs / "pods"

    @property
    def kubelet_var_log(self) -> Path:
        """kubelet's view of /var/log (its /var/log/containers links land here, not on the host)."""
        return self.dir / "var-log"

    @property
    def kubelet_var_lib(self) -> Path:
        """kubelet's view of /var/lib/kubelet, where it puts the device-plugin socket whatever
        its --root-dir says (the path is a constant of the device plugin API)."""
        return self.dir / "var-lib-kubelet"

    @property
    def sysctl_dir(self) -> Path:
        return self.dir / "sysctl"

    @property
    def registry_dir(self) -> Path:
        return self.dir / "registry"

    @property
    def pids(self) -> Path:
        return self.dir / "pids"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.pids / f"{component}.pid"


@dataclass
class NodeState:
    """What `up` decided, kept in node.json for status and down."""

    slot: int
    bin_dir: str
    cgroup_driver: str = "cgroupfs"
    runtime: str = "cri-py"  # or containerd / containerd-1.6, in cri-py's place for comparisons
    # directories `up` had to create outside the node directory (mount points only), removed by down
    host_dirs: list[str] = field(default_factory=list)

    def save(self, layout: Layout) -> None:
        layout.state_file.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, layout: Layout) -> NodeState | None:
        try:
            data = json.loads(layout.state_file.read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)
