"""--node's last part: a Deployment through the real kubelet (hack/node), cri-py against containerd 2.x.

Each runtime gets a one-node cluster of its own (hack/node's Cluster: the same Kubernetes
binaries, registry, images and network), one after the other so they never share the two cores.
Per node: a 2-replica warm-up (the image pulled once), then `--kubelet-rounds` rounds of an
`--replicas` (30) Deployment: from `kubectl apply` until all its pods are Ready, and from
`kubectl delete` until the API has none of them and kubelet has removed every pod sandbox from
the runtime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import report
from benchlib.util import log

HACK = Path(__file__).resolve().parents[1]


def _round(bench: Any, name: str, replicas: int) -> dict[str, float]:
    from nodelib.cluster import wait_for
    from nodelib.deploybench import deployment

    started = time.monotonic()
    bench.k("apply", "-f", "-", stdin=json.dumps(deployment(name, replicas)))
    while bench.api_ready_count(name) < replicas:
        if time.monotonic() - started > 600:
            raise RuntimeError(f"{replicas} pods not Ready after 600 s")
        time.sleep(0.05)
    ready = time.monotonic() - started
    deleting = time.monotonic()
    bench.k("delete", "deployment", name, "--wait=false")
    path = f"/api/v1/namespaces/default/pods?labelSelector=app%3D{name}"
    wait_for(lambda: not bench.cluster.api(path).json()["items"], 600, "the pods to be gone", 0.05)
    api_gone = time.monotonic() - deleting
    wait_for(bench._runtime_empty, 600, "kubelet to remove the pods from the runtime", 0.1)
    runtime_gone = time.monotonic() - deleting
    return {"ready_s": ready, "api_gone_s": api_gone, "runtime_gone_s": runtime_gone}


def deployments(args: argparse.Namespace, runtimes: list[str]) -> dict[str, Any]:
    if not (HACK / "nodelib" / "deploybench.py").exists():
        return {"skipped": "hack/node (issue 11) is not in this checkout"}
    from nodelib.cluster import Cluster, build_binaries
    from nodelib.deploybench import Bench

    bin_dir = build_binaries()
    results: dict[str, Any] = {"replicas": args.replicas, "rounds": args.kubelet_rounds, "runtimes": {}}
    for runtime in runtimes:
        directory = Path(tempfile.mkdtemp(prefix="cripy-bench-node-", dir="/tmp"))
        cluster = Cluster(directory)
        log(f"kubelet on {runtime}: starting a node")
        cluster.up(bin_dir=bin_dir, runtime=runtime, log=lambda line: None)
        one: dict[str, Any] = {"rounds": []}
        results["runtimes"][runtime] = one
        try:
            bench = Bench(cluster)
            one["version"] = bench.runtime_version()
            warm = _round(bench, "warm", 2)
            log(f"  warm-up (pull, 2 pods): Ready in {warm['ready_s']:.1f} s")
            for index in range(args.kubelet_rounds):
                time.sleep(5)
                load = Path("/proc/loadavg").read_text().split()[0]
                r = _round(bench, f"d{index}", args.replicas)
                r["loadavg"] = float(load)
                one["rounds"].append(r)
                log(
                    f"  round {index + 1}: {args.replicas} Ready in {r['ready_s']:.1f} s, gone from the API in "
                    f"{r['api_gone_s']:.1f} s, from the runtime in {r['runtime_gone_s']:.1f} s (load {load})"
                )
        except Exception as err:  # noqa: BLE001 - the other runtime is still measured
            one["error"] = f"{type(err).__name__}: {err}"
            log(f"  {runtime}: {one['error']}")
        finally:
            problems = cluster.down(keep_logs=False)
            if problems:
                one["left_behind"] = problems
                log(f"  {runtime}: node left {problems}")
    return results


def rows(result: dict[str, Any] | None) -> list[report.Row]:
    """Median seconds of the rounds per runtime (each round's in the detail)."""
    if not result or "skipped" in result:
        return []
    per = result["runtimes"]
    names = list(per)
    rows = []
    for key, label in (
        ("ready_s", f"{result['replicas']}-replica Deployment: apply -> all Ready"),
        ("api_gone_s", "delete -> all pods gone from the API"),
        ("runtime_gone_s", "delete -> every pod sandbox gone from the runtime"),
    ):
        values = {
            n: statistics.median(r[key] for r in per[n]["rounds"]) for n in names if per[n].get("rounds")
        }
        row: report.Row = {"measure": label, "unit": "s", "values": values, "detail": {}, "errors": {}}
        row["errors"] = {n: 1 for n in names if per[n].get("error")}
        row["detail"] = {
            n: " / ".join(f"{r[key]:.1f}" for r in per[n]["rounds"]) for n in names if per[n].get("rounds")
        }
        row["no_target"] = True
        report.add_ratios(row, names)
        rows.append(row)
    return rows


def render(result: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    if not result:
        return [], []
    if "skipped" in result:
        line = f"Deployment through the real kubelet: not measured ({result['skipped']})."
        return [line], [line]
    per = result["runtimes"]
    names = list(per)
    table = rows(result)
    versions = ", ".join(f"{n}: {per[n].get('version', '?')}" for n in names)
    intro = (
        f"Through the real kubelet (hack/node, one node per runtime, one after the other; {versions}): median of "
        f"{result['rounds']} rounds, each round's seconds in the detail table; no target is set on these."
    )
    loads = "; ".join(f"{n} " + "/".join(str(r["loadavg"]) for r in per[n].get("rounds", [])) for n in names)
    text = [intro, *report.table_lines(table, names, markdown=False, floors=False)]
    md = [
        "### Deployment through the real kubelet",
        "",
        intro + f" Load average (1 min) before each round: {loads}.",
        "",
        *report.table_lines(table, names, markdown=True, floors=False),
        "",
        "Each round in seconds:",
        "",
        *report.detail_lines(table, names),
    ]
    errors = [f"{n}: {per[n]['error']}" for n in names if per[n].get("error")]
    if errors:
        md += ["", "Failed: " + "; ".join(errors)]
    return text, md
