"""Time from `kubectl apply` of an N-replica Deployment to all N pods Ready, per runtime.

Each runtime gets a node of its own (hack/node's Cluster, the same binaries, registry, network
and images), one after the other so they never share the two cores. Per node: a warm-up
Deployment (the image pulled once), then `rounds` times: apply, poll the pods until all are
Ready, delete, wait until kubelet has removed every pod from the runtime.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodelib.cluster import Cluster, build_binaries, wait_for


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "docker.io/library/busybox:latest",
                                    "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
                },
            },
        },
    }  # fmt: skip


@dataclass
class Round:
    first_ready: float
    all_ready: float


@dataclass
class RuntimeResult:
    runtime: str
    version: str
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        alls = [r.all_ready for r in self.rounds]
        return {
            "runtime": self.runtime,
            "version": self.version,
            "all_ready_s": [round(a, 2) for a in alls],
            "first_ready_s": [round(r.first_ready, 2) for r in self.rounds],
            "median_all_ready_s": round(statistics.median(alls), 2),
            "min_all_ready_s": round(min(alls), 2),
        }


class Bench:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.kubectl = str(cluster.bin_dir / "kubectl")
        self.env = {"KUBECONFIG": str(cluster.kubeconfig), "KUBECACHEDIR": str(cluster.layout.dir / "kc"),
                    "PATH": "/usr/bin:/bin"}  # fmt: skip

    def k(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [self.kubectl, *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def api_ready_count(self, name: str) -> int:
        # the API directly: a kubectl process per poll would load the CPU the node needs
        data = self.cluster.api(f"/api/v1/namespaces/default/pods?labelSelector=app%3D{name}").json()
        return sum(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
            for p in data["items"]
        )

    def run_round(self, name: str, replicas: int) -> Round:
        manifest = json.dumps(deployment(name, replicas))
        started = time.monotonic()
        self.k("apply", "-f", "-", stdin=manifest)
        first = 0.0
        while True:
            count = self.api_ready_count(name)
            now = time.monotonic() - started
            if count and not first:
                first = now
            if count >= replicas:
                break
            if now > 600:
                raise RuntimeError(f"{replicas} pods not Ready after 600 s")
            time.sleep(0.05)
        result = Round(first, now)
        self.k("delete", "deployment", name, "--wait=true")
        wait_for(lambda: not self.cluster.api(f"/api/v1/namespaces/default/pods?labelSelector=app%3D{name}")
                 .json()["items"], 300, "the pods to be gone", 0.5)  # fmt: skip
        wait_for(self._runtime_empty, 300, "kubelet to remove the pods from the runtime", 0.5)
        return result

    def _runtime_empty(self) -> bool:
        from cri_py.api import api_pb2

        channel, stub = self.cluster._cri_stub()
        try:
            pods = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        finally:
            channel.close()
        return not [p for p in pods if p.metadata.namespace == "default"]

    def runtime_version(self) -> str:
        data = self.cluster.api(f"/api/v1/nodes/{self.cluster.slot.node_name}").json()
        return str(data["status"]["nodeInfo"]["containerRuntimeVersion"])


def measure(runtimes: list[str], replicas: int, rounds: int, log: Any = print) -> list[RuntimeResult]:
    bin_dir = build_binaries()
    results = []
    for runtime in runtimes:
        directory = Path(tempfile.mkdtemp(prefix="cripy-nodebench-", dir="/tmp"))
        cluster = Cluster(directory)
        cluster.up(bin_dir=bin_dir, runtime=runtime, log=log)
        try:
            bench = Bench(cluster)
            result = RuntimeResult(runtime, bench.runtime_version())
            warm = bench.run_round("warm", 2)
            log(f"{runtime}: warm-up (image pull, 2 pods) {warm.all_ready:.2f} s")
            time.sleep(5)
            for index in range(rounds):
                one = bench.run_round(f"d{index}", replicas)
                log(
                    f"{runtime}: round {index + 1}: first Ready {one.first_ready:.2f} s, all {replicas} Ready {one.all_ready:.2f} s"
                )
                result.rounds.append(one)
                time.sleep(5)
            results.append(result)
        finally:
            problems = cluster.down(keep_logs=False)
            if problems:
                log(f"{runtime}: node left: {problems}")
    return results


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runtimes", default="cri-py,containerd")
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results = measure(args.runtimes.split(","), args.replicas, args.rounds,
                      log=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
    print(json.dumps([r.summary() for r in results], indent=1))
    return 0
