"""How the node e2e suite (e2e_node.test, run by ginkgo) is driven on the node.

The suite starts etcd and the API server (in its own process, on 127.0.0.1 of the node) and
kubelet (the built binary, through `systemd-run`: the node's units, so its restart specs can
restart it), then runs the focused specs against the API server. What it is given here:

- the base KubeletConfiguration this host needs: cgroupfs and cgroup v1 (failCgroupV1: false),
  swap off, the pod CIDR of the node's CNI network, resolv.conf of the node, /system for the
  node's other processes, the upstream suite's eviction and sync settings
  (test/e2e_node/jenkins/default-kubelet-config.yaml);
- kubelet flags: the runtime's cgroup and the node's address;
- the runtime endpoint, process name and pid file (specs that look at the runtime's cgroup);
- --prepull-images=false: every image is pulled by the specs themselves, from the node's
  registry through the runtime's mirrors, never from the internet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from nodens import NODE_IP, POD_SUBNET
from runtimes import RUNTIME_CGROUP, Runtime

FOCUS = r"\[NodeConformance\]"
NODE_NAME = "cripy-nconf"


def kubelet_config(workdir: Path) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": "/",
        # kubelet keeps the node's other processes here ("misc" in the summary API); the
        # suite names no such cgroup when it starts kubelet through systemd-run
        "systemCgroups": "/system",
        "failCgroupV1": False,
        "failSwapOn": True,
        "podCIDR": POD_SUBNET,
        "resolvConf": str(workdir / "node" / "resolv.conf"),
        "volumeStatsAggPeriod": "10s",
        "fileCheckFrequency": "10s",
        "evictionPressureTransitionPeriod": "30s",
        "evictionHard": {"memory.available": "250Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%"},
        "evictionMinimumReclaim": {"nodefs.available": "5%", "nodefs.inodesFree": "5%"},
        "serializeImagePulls": False,
    }
    path = workdir / "kubelet-base.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class SuiteRun:
    bin_dir: Path
    workdir: Path
    runtime: Runtime
    nodes: int
    focus: str
    skip: str
    timeout: str

    @property
    def report_dir(self) -> Path:
        return self.workdir / "report"

    def command(self) -> list[str]:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        ginkgo = [
            str(self.bin_dir / "ginkgo"),
            f"--nodes={self.nodes}",
            f"--focus={self.focus}",
            f"--timeout={self.timeout}",
            "--no-color",
            "--output-dir",
            str(self.report_dir),
            "--json-report=report.json",
            "--junit-report=junit.xml",
            "--poll-progress-after=5m",
        ]
        if self.skip:
            ginkgo.append(f"--skip={self.skip}")
        suite = [
            f"--container-runtime-endpoint={self.runtime.endpoint}",
            f"--image-service-endpoint={self.runtime.endpoint}",
            f"--container-runtime-process-name={self.runtime.process_name}",
            f"--container-runtime-pid-file={self.runtime.pid_file}",
            f"--k8s-bin-dir={self.bin_dir}",
            "--prepull-images=false",
            f"--report-dir={self.report_dir}",
            f"--kubelet-config-file={kubelet_config(self.workdir)}",
            f"--kubelet-flags=--runtime-cgroups={RUNTIME_CGROUP} --node-ip={NODE_IP}",
            f"--node-name={NODE_NAME}",
        ]
        return [*ginkgo, str(self.bin_dir / "e2e_node.test"), "--", *suite]


@dataclass
class SpecResult:
    name: str
    state: str  # passed failed skipped timedout panicked interrupted
    seconds: float
    message: str
    location: str

    @property
    def ok(self) -> bool:
        return self.state == "passed"


def in_focus(name: str, focus: str, skip: str) -> bool:
    return re.search(focus, name) is not None and not (skip and re.search(skip, name))


def spec_name(report: dict[str, Any]) -> str:
    """The spec's full text as ginkgo matches --focus against it: the non-empty texts of its
    containers and its own, joined by spaces."""
    texts = [*(report.get("ContainerHierarchyTexts") or []), report.get("LeafNodeText", "")]
    return " ".join(text for text in texts if text)


def read_results(report_json: Path) -> list[SpecResult]:
    """The It specs of a ginkgo JSON report (setup nodes left out), in name order."""
    results: list[SpecResult] = []
    for suite in json.loads(report_json.read_text()):
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            failure = spec.get("Failure") or {}
            message = (failure.get("Message") or "").strip()
            location = failure.get("Location") or spec.get("LeafNodeLocation") or {}
            results.append(
                SpecResult(
                    name=spec_name(spec),
                    state=spec.get("State", "unknown"),
                    seconds=(spec.get("RunTime") or 0) / 1e9,
                    message=message,
                    location=f"{Path(location.get('FileName', '')).name}:{location.get('LineNumber', '')}",
                )
            )
    return sorted(results, key=lambda r: r.name)
