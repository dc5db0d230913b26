"""Bench networks: one bridge and /24 per peer inside 10.251.0.0/16, behind a FORWARD guard.

The guard rule drops anything from the bench subnet to outside it (ip_forward is on here), and
cleanup() removes the rule, the bridges and host-local's state.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib.util import run

BENCH_SUPERNET = "10.251.0.0/16"


def _guard(owner: str) -> list[str]:
    # one rule per owner (a bench process, a peer's directory): two runs at once must not remove
    # each other's guard
    comment = f"cri-bench guard {owner or os.getpid()}"
    return ["FORWARD", "-s", BENCH_SUPERNET, "!", "-d", BENCH_SUPERNET, "-m", "comment", "--comment", comment,
            "-j", "DROP"]  # fmt: skip


@dataclass(frozen=True)
class BenchNet:
    name: str  # CNI network name
    bridge: str
    subnet: str  # a /24 inside BENCH_SUPERNET
    ipam_dir: Path

    def conflist(self) -> dict[str, object]:
        return {
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet}]],
                        "dataDir": str(self.ipam_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def write_conf_dir(self, conf_dir: Path) -> None:
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / f"10-{self.name}.conflist").write_text(json.dumps(self.conflist(), indent=2))

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def bench_net(name: str, index: int, workdir: Path) -> BenchNet:
    return BenchNet(f"crib-{name}", f"crib{name[:6]}0", f"10.251.{index}.0/24", workdir / f"ipam-{name}")


def add_guard(owner: str = "") -> None:
    if subprocess.run(["iptables", "-w", "-C", *_guard(owner)], capture_output=True).returncode != 0:
        run(["iptables", "-w", "-I", *_guard(owner)])


def remove_guard(owner: str = "") -> None:
    while subprocess.run(["iptables", "-w", "-D", *_guard(owner)], capture_output=True).returncode == 0:
        pass
