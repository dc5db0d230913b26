"""`hack/bench --spans`: where cri-py's time goes in each RPC of a pod lifecycle.

Runs serial lifecycles against cri-py under spantrace.py, marks each RPC on the client side and
prints, per RPC, its p50 and the p50 of every span (subprocess, worker-thread call, blocked loop)
that started inside it. Spans that finish after the RPC returned are background work.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchlib.cri import CriClient

RPCS = (
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ExecSync",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
)


def record(client: CriClient, iterations: int, warmup: int) -> list[tuple[float, str]]:
    marks: list[tuple[float, str]] = []
    for i in range(warmup + iterations):
        own: list[tuple[float, str]] = []

        def mark(name: str, own: list[tuple[float, str]] = own) -> None:
            own.append((time.time(), name))

        mark("RunPodSandbox")
        pod = client.run_pod(f"bench-spans-{i}")
        mark("CreateContainer")
        cid = client.create_container(pod, "c")
        mark("StartContainer")
        client.start_container(cid)
        mark("ExecSync")
        client.exec_sync(cid, ["true"])
        mark("StopContainer")
        client.stop_container(cid)
        mark("RemoveContainer")
        client.remove_container(cid)
        mark("StopPodSandbox")
        client.stop_pod(pod.id)
        mark("RemovePodSandbox")
        client.remove_pod(pod.id)
        mark("end")
        time.sleep(0.05)  # let background clean-up finish so it is not charged to the next RPC
        if i >= warmup:
            marks += own
    return marks


def breakdown(marks: list[tuple[float, str]], span_file: Path) -> dict[str, Any]:
    spans = [json.loads(line) for line in span_file.read_text().splitlines() if line.strip()]
    rpc_times: dict[str, list[float]] = defaultdict(list)
    inside: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for (start, name), (end, _next) in zip(marks, marks[1:], strict=False):
        if name == "end":
            continue
        rpc_times[name].append(end - start)
        for kind, span, s0, s1 in spans:
            if start <= s0 < end:
                inside[name][f"{kind} {span}"].append((s0 - start, s1 - s0))
    out: dict[str, Any] = {}
    for rpc in RPCS:
        if rpc not in rpc_times:
            continue
        n = len(rpc_times[rpc])
        parts = {
            key: {
                "offset_ms": statistics.median(o for o, _ in v) * 1000,
                "p50_ms": statistics.median(d for _, d in v) * 1000,
                "per_call": len(v) / n,
            }
            for key, v in inside[rpc].items()
        }
        out[rpc] = {"p50_ms": statistics.median(rpc_times[rpc]) * 1000, "n": n, "spans": parts}
    return out


def lines(result: dict[str, Any]) -> list[str]:
    text = []
    for rpc, info in result.items():
        text.append(f"{rpc}: p50 {info['p50_ms']:.1f} ms (n={info['n']})")
        for key, part in sorted(info["spans"].items(), key=lambda kv: kv[1]["offset_ms"]):
            text.append(
                f"    at +{part['offset_ms']:5.1f} ms  {part['p50_ms']:6.1f} ms  x{part['per_call']:.1f}  {key}"
            )
    return text
