"""Bench networks: one bridge and /24 per runtime inside 10.251.0.0/16, behind a FORWARD guard.

The guard rule drops anything from the bench subnet to outside it (ip_forward is on here);
remove_guard() takes the rule away again and remove_bridge() the bridge. A caller with a range
of its own (hack/peer-* --subnet) guards just that subnet.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib.util import run

BENCH_SUPERNET = "10.251.0.0/16"


def _guard(owner: str, subnet: str) -> list[str]:
    # one rule per owner (a bench process, a peer's directory): two runs at once must not remove
    # each other's guard
    comment = f"cri-bench guard {owner or os.getpid()}"
    return ["FORWARD", "-s", subnet, "!", "-d", subnet, "-m", "comment", "--comment", comment,
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
    """10.251.<index>.0/24 on bridge crib<name><index>: the index keeps two users apart."""
    return BenchNet(
        f"crib-{name}", f"crib{name[:6]}{index}", f"10.251.{index}.0/24", workdir / f"ipam-{name}"
    )


def own_net(name: str, subnet: str, bridge: str, workdir: Path) -> BenchNet:
    """A network in a range the caller owns (another suite's subnets), not the bench's."""
    if len(bridge) > 15:
        raise ValueError(f"bridge name {bridge!r} is longer than 15 characters")
    return BenchNet(f"crib-{name}", bridge, subnet, workdir / f"ipam-{name}")


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale_guards() -> None:
    """Guards owned by a bench process that is gone (killed before its cleanup ran)."""
    rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout
    for line in rules.splitlines():
        match = re.search(r'--comment "cri-bench guard (\d+)"', line)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(["iptables", "-w", "-D", *shlex.split(line)[1:]], capture_output=True)


def add_guard(owner: str = "", subnet: str = BENCH_SUPERNET) -> None:
    remove_stale_guards()
    if subprocess.run(["iptables", "-w", "-C", *_guard(owner, subnet)], capture_output=True).returncode != 0:
        run(["iptables", "-w", "-I", *_guard(owner, subnet)])


def remove_guard(owner: str = "", subnet: str = BENCH_SUPERNET) -> None:
    while (
        subprocess.run(["iptables", "-w", "-D", *_guard(owner, subnet)], capture_output=True).returncode == 0
    ):
        pass
