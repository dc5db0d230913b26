"""hack/bench with tiny N against a real cri-py daemon, so the harness can't rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.registry_fixtures import TestRegistry, registry  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
LATENCY_MEASURES = ("RunPodSandbox", "CreateContainer+StartContainer", "full lifecycle", "ExecSync true")


@pytest.mark.timeout(120)
def test_bench_endpoint_measures_cri_py(cri_factory: Any, registry: TestRegistry, tmp_path: Path) -> None:  # noqa: F811
    daemon = cri_factory(registry.daemon_overrides())
    assert daemon.proc is not None
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(REPO / "hack" / "bench"),
        "--endpoint",
        f"unix://{daemon.socket}",
        "--name",
        "cri-py",
        "--busybox-image",
        registry.busybox,
        "--daemon-pid",
        str(daemon.proc.pid),
        "--monitor-marker",
        str(daemon.workdir),
        "--n",
        "2",
        "--warmup",
        "1",
        "--pods",
        "3",
        "--throughput-total",
        "4",
        "--throughput-concurrency",
        "2",
        "--out",
        str(out),
        "--workdir-base",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "latest-endpoint.json").read_text())
    assert result["leftovers"] == []
    results = result["results"]
    for measure in (*LATENCY_MEASURES, "ListContainers at 3 pods", "ListPodSandbox at 3 pods"):
        slot = results[measure]["cri-py"]
        assert slot["errors"] == [], (measure, slot["errors"])
        assert len(slot["samples_s"]) == 2
        assert 0 < slot["summary"]["min"] <= slot["summary"]["p50"] <= slot["summary"]["max"]
    throughput = results["throughput 4 lifecycles, 2 in flight"]["cri-py"]
    assert throughput["errors"] == [] and throughput["completed"] == 4
    memory = results["memory"]["cri-py"]
    assert memory["pods"] == 3
    # the daemon plus one monitor per running container
    assert memory["loaded"]["monitors"] >= 3
    assert memory["loaded"]["rss_kib"] > memory["idle"]["rss_kib"] > 0
    # the floors ran and the table names them
    assert result["floors"]["runc exec true"] > 0
    assert "ExecSync true" in proc.stdout and "runc exec true" in proc.stdout
    # every pod the bench made is gone again
    listed = daemon.runtime.ListPodSandbox(
        __import__("cri_py.api.api_pb2", fromlist=["x"]).ListPodSandboxRequest()
    )
    assert [p for p in listed.items if p.labels.get("cri-bench")] == []


@pytest.mark.timeout(90)
def test_bench_spans_breaks_rpcs_down(tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "hack" / "bench"), "--spans", "--n", "1", "--warmup", "0"]
    cmd += ["--out", str(out), "--workdir-base", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=80, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = out.glob("spans-*.json")
    result = json.loads(report.read_text())
    assert set(result) == {
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "ExecSync",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    }
    # the daemon ran under the span recorder: its runtime calls were seen inside the RPCs
    assert any(key.startswith("proc conmon") for key in result["CreateContainer"]["spans"])
    assert any(key.startswith("proc runc exec") for key in result["ExecSync"]["spans"])
    # runc's container is released through its exec FIFO: no `runc start` process (6d94a98)
    assert not any(key.startswith("proc runc start") for key in result["StartContainer"]["spans"])
    # and a stopped one is deleted by the daemon itself (oci/runc_delete.py): no `runc delete`
    for rpc in ("StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"):
        assert not any(key.startswith("proc runc delete") for key in result[rpc]["spans"]), rpc
    assert all(info["p50_ms"] > 0 for info in result.values())
