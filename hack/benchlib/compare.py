"""hack/bench --compare: cri-py, containerd 2.x and CRI-O (and Debian's containerd 1.6 on request) in one rotation.

The floors (runc and the CNI bridge plugin run by hand) are measured once for their own table and
again inside each latency measure's rotation, so load drift hits runtimes and floor alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlib import report, runtimes
from benchlib.floors import PULL_MEASURE, CniFloor, RuncFloor, collect, interleaved_floors
from benchlib.measure import Bench
from benchlib.network import bench_net
from benchlib.stats import summarize
from benchlib.util import log

REPO = Path(__file__).resolve().parents[2]
MEASURES = ("pull", "run", "create", "lifecycle", "exec", "throughput", "pods")
# which floor each CRI measure is compared with (composite floors are sums of p50s)
FLOOR_OF = {
    "RunPodSandbox": "netns + CNI ADD + runc run -d",
    "CreateContainer+StartContainer": "runc run -d",
    "full lifecycle": "2 x runc run/kill/delete + netns + CNI ADD/DEL",
    "ExecSync true": "runc exec true",
    PULL_MEASURE: "skopeo copy to a dir",
}


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def runtime_names(args: argparse.Namespace) -> list[str]:
    names = ["cri-py", *runtimes.PEERS]
    if getattr(args, "debian_containerd", False):
        names += list(runtimes.EXTRA_PEERS)
    return names


@contextlib.contextmanager
def bench_workdir(base: Path) -> Iterator[Path]:
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cri-bench-", dir=base)).resolve()
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def floor_kit(workdir: Path, cgroup_parent: str) -> Iterator[tuple[RuncFloor, CniFloor]]:
    """A prepared runc bundle with a running exec container, and the CNI floor's own network."""
    runc_floor = RuncFloor(workdir / "floor-runc", cgroup_parent)
    cni_floor = CniFloor(workdir / "floor-cni", bench_net("floor", 3, workdir / "floor-cni"))
    try:
        runc_floor.prepare()
        runc_floor.start_exec_container()
        yield runc_floor, cni_floor
        runc_floor.stop_exec_container()
    finally:
        runc_floor.cleanup()
        cni_floor.cleanup()


def run_floors(
    runc_floor: RuncFloor, cni_floor: CniFloor, n: int, warmup: int
) -> tuple[dict[str, float], dict[str, Any]]:
    log("floors: runc and the CNI bridge plugin run directly")
    detail: dict[str, Any] = {}
    for key, values in collect(n, warmup, runc_floor.run_kill_delete).items():
        detail[f"runc {key}"] = summarize(values)
    detail["runc exec true"] = summarize(collect(n, warmup, lambda: {"t": runc_floor.exec_once()})["t"])
    for key, values in collect(n, warmup, cni_floor.once).items():
        detail[f"cni {key}"] = summarize(values)
    p50 = {k: v.p50 for k, v in detail.items() if v is not None}
    floors = {
        "runc run -d": p50["runc run"],
        "runc exec true": p50["runc exec true"],
        "netns + CNI ADD + runc run -d": p50["cni netns"] / 2 + p50["cni add"] + p50["runc run"],
        "2 x runc run/kill/delete + netns + CNI ADD/DEL": 2 * p50["runc total"]
        + p50["cni netns"]
        + p50["cni add_del"],
    }
    for key, summary in detail.items():
        assert summary is not None
        log(
            f"  {key:20s} p50 {summary.p50 * 1000:.1f} ms (min {summary.min * 1000:.1f}, "
            f"p95 {summary.p95 * 1000:.1f})"
        )
    return floors, {k: v.to_dict() for k, v in detail.items() if v is not None}


def run_measures(bench: Bench, args: argparse.Namespace) -> None:
    only = set(args.only.split(","))
    try:
        if "pull" in only and all(t.big_image for t in bench.targets):
            bench.pull(args.pull_n)
        if "run" in only:
            bench.run_pod_sandbox()
        if "create" in only:
            bench.create_start()
        if "lifecycle" in only:
            bench.lifecycle()
        if "exec" in only:
            bench.exec_sync()
        if "throughput" in only:
            bench.throughput(args.throughput_total, args.throughput_concurrency)
        if "pods" in only:
            bench.many_pods(args.pods)
    finally:
        bench.cleanup()


def profiler_wrapper(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    wrapper: list[str] = []
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
        result["profile"] = str(args.out / "cri-py-profile.speedscope.json")
        py_spy = REPO / ".venv/bin/py-spy"
        wrapper = [str(py_spy), "record", "--nonblocking", "--format", "speedscope", "--rate", "200"]
        wrapper += ["-o", result["profile"], "--"]
    if args.cri_py_wrapper:
        wrapper += [sys.executable, str(args.cri_py_wrapper.resolve())]
        result["cri_py_wrapper"] = str(args.cri_py_wrapper)
    return wrapper


def checkout() -> str:
    """The commit the bench measured (cri-py's code), with `+changes` for a dirty tree."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return "?"
    return head + ("+changes" if dirty else "")


def new_result(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mode": mode,
        "commit": checkout(),
        "loadavg_start": loadavg(),
        "n": args.n,
        "warmup": args.warmup,
        "pods": args.pods,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def compare(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    cgroup_parent = f"/cri-bench-{os.getpid()}"
    result = new_result("compare", args)
    names = runtime_names(args)
    with bench_workdir(args.workdir_base) as workdir:
        wrapper = profiler_wrapper(args, result)
        with runtimes.started(
            workdir, cgroup_parent, names, result, wrapper, keep_logs=args.out / "runtime-logs"
        ) as rt:
            with contextlib.ExitStack() as stack:
                kit = stack.enter_context(floor_kit(workdir, cgroup_parent)) if not args.no_floors else None
                floors: dict[str, float] = {}
                if kit is not None:
                    floors, result["floors_detail"] = run_floors(*kit, args.n, args.warmup)
                result["floors"] = floors
                per_measure = (
                    interleaved_floors(*kit, pull_ref=rt.images.big, workdir=workdir) if kit else None
                )
                bench = Bench(rt.targets, args.n, args.warmup, log, per_measure)
                run_measures(bench, args)
                result["results"] = bench.results
    result["wall_s"] = time.monotonic() - started
    result["machine"] = report.machine()
    result["loadavg_end"] = loadavg()
    return result
