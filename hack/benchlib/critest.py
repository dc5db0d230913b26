"""hack/bench --critest: cri-tools' own `critest -benchmark` against cri-py, containerd 2.x and CRI-O.

critest (hack/cri-tools/build, built when absent) runs its pod, container and image benchmarks
with `--critest-n` samples, `--critest-parallel` at a time; `-registry-prefix` points every image
it names at the bench's local registry, where the busybox image is pushed under those names. The
runtimes take turns, `--critest-rounds` times in a rotating order; per operation the p50 over
all rounds' samples is set against the best peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import report, runtimes
from benchlib.compare import bench_workdir, loadavg, new_result, runtime_names
from benchlib.images import _config, busybox_layer
from benchlib.registry import LocalRegistry
from benchlib.stats import summarize
from benchlib.util import log

HACK = Path(__file__).resolve().parents[1]
# the images critest's benchmarks pull, under their upstream names: the runtimes reach them
# through mirror configuration that points these hosts at the local registry
MIRRORS = ("registry.k8s.io", "public.ecr.aws")
CRITEST_IMAGES = (
    "e2e-test-images/busybox:1.29-2",  # containers (critest's default test image)
    "docker/library/busybox:1.35.0-glibc",  # image pull/status/remove, and the listing set
    "docker/library/busybox:1-uclibc",
    "docker/library/busybox:1",
    "docker/library/busybox:1-glibc",
    "docker/library/busybox:1-musl",
)
# one sample, no data file: not run
UNMEASURED = "benchmark about start a container from scratch"
# the benchmarks that write data files, run one at a time: an assertion failing inside one of them
# panics critest's process (it runs in gmeasure's goroutine), which would take the others along
BENCHMARKS = (
    "benchmark about lifecycle of PodSandbox",
    "benchmark about basic operations on Container",
    "benchmark about basic operations on Image",
    "benchmark about listing Image",
)


OPS_OF = {
    "benchmark about lifecycle of PodSandbox": ("CreatePod", "StatusPod", "StopPod", "RemovePod"),
    "benchmark about basic operations on Container": (
        "CreateContainer",
        "StartContainer",
        "StatusContainer",
        "StopContainer",
        "RemoveContainer",
    ),
    "benchmark about basic operations on Image": ("PullImage", "StatusImage", "RemoveImage"),
    "benchmark about listing Image": ("ListImages",),
}


def critest_binary() -> Path:
    build = HACK / "cri-tools" / "build"
    subprocess.run([str(build), "critest"], check=True, stdout=sys.stderr)
    out = subprocess.run([str(build), "--bin-dir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / "critest"


def push_critest_images(registry: LocalRegistry) -> None:
    layer = busybox_layer()
    for ref in CRITEST_IMAGES:
        repo, tag = ref.rsplit(":", 1)
        registry.push_image(repo, tag, [layer], _config([], ["sh"]))


def params_file(path: Path, n: int, parallel: int) -> Path:
    params = {
        "containersNumber": n,
        "containersNumberParallel": parallel,
        "podsNumber": n,
        "podsNumberParallel": parallel,
        "imagesNumber": n,
        "imagesNumberParallel": parallel,
    }
    path.write_text(json.dumps(params))  # YAML reads JSON
    return path


def run_critest(
    binary: Path, endpoint: str, params: Path, benchmark: str, out_dir: Path, log_file: Path
) -> dict[str, Any]:
    """One of critest's benchmarks against one endpoint: its samples per operation, in seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binary),
        "-benchmark",
        f"-runtime-endpoint={endpoint}",
        f"-image-endpoint={endpoint}",
        f"-benchmarking-params-file={params}",
        f"-benchmarking-output-dir={out_dir}",
        # critest sets ginkgo's focus to "benchmark" itself: the others are skipped instead
        "-ginkgo.skip=" + "|".join(re.escape(b) for b in (*BENCHMARKS, UNMEASURED) if b != benchmark),
        "-ginkgo.no-color",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=out_dir)
    output = proc.stdout + proc.stderr
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(output)
    ops: dict[str, list[float]] = {}
    for data in sorted(out_dir.glob("*_benchmark_data.json")):
        results = json.loads(data.read_text())
        names = results["operationsNames"]
        for point in results.get("datapoints") or []:
            for name, ns in zip(names, point["operationsDurationsNs"], strict=False):
                ops.setdefault(name, []).append(ns / 1e9)
    failure = next((line.strip() for line in output.splitlines() if "[FAILED] failed" in line), "")
    return {
        "benchmark": benchmark,
        "exit": proc.returncode,
        "wall_s": time.monotonic() - t0,
        "ops": ops,
        "log": str(log_file),
        "failure": failure[:400],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    cgroup_parent = f"/cri-bench-{os.getpid()}"
    result = new_result("critest", args)
    result.update(
        critest_n=args.critest_n, critest_parallel=args.critest_parallel, rounds=args.critest_rounds
    )
    binary = critest_binary()
    names = runtime_names(args)
    runs: dict[str, list[dict[str, Any]]] = {}
    result["runs"] = runs
    with bench_workdir(args.workdir_base) as workdir:
        with runtimes.started(
            workdir,
            cgroup_parent,
            names,
            result,
            mirrors=MIRRORS,
            crio_clamp_oom=True,
            keep_logs=args.out / "runtime-logs",
        ) as rt:
            push_critest_images(rt.registry)
            params = params_file(workdir / "critest-params.yaml", args.critest_n, args.critest_parallel)
            turn = 0
            for round_ in range(args.critest_rounds):
                for b, benchmark in enumerate(BENCHMARKS):
                    shift = turn % len(rt.targets)
                    turn += 1
                    for t in rt.targets[shift:] + rt.targets[:shift]:
                        tag = f"{t.name}-{round_}-{b}"
                        one = run_critest(
                            binary,
                            t.client.endpoint,
                            params,
                            benchmark,
                            workdir / "critest" / tag,
                            args.out / "critest-logs" / f"{tag}.log",
                        )
                        one["loadavg"] = loadavg()
                        runs.setdefault(t.name, []).append(one)
                        log(
                            f"{t.name}: {benchmark}: exit {one['exit']} in {one['wall_s']:.0f} s, load "
                            f"{one['loadavg'][0]}" + (f"\n    {one['failure']}" if one["exit"] else "")
                        )
    result["wall_s"] = time.monotonic() - started
    result["machine"] = report.machine()
    result["loadavg_end"] = loadavg()
    return result


def rows(result: dict[str, Any]) -> list[report.Row]:
    names = list(result.get("versions", {}).keys())
    merged: dict[str, dict[str, list[float]]] = {}
    failures: dict[str, dict[str, str]] = {}  # op -> runtime -> why its benchmark failed
    for name, runs in result.get("runs", {}).items():
        for one in runs:
            for op, values in one["ops"].items():
                merged.setdefault(op, {}).setdefault(name, []).extend(values)
            if one["exit"]:
                for op in OPS_OF.get(one["benchmark"], ()):
                    merged.setdefault(op, {})
                    failures.setdefault(op, {})[name] = one["failure"]
    out = []
    for op, per in merged.items():
        failed = {n: 1 for n in failures.get(op, {})}
        row: report.Row = {"measure": op, "unit": "ms", "values": {}, "detail": {}, "errors": failed}
        for name in names:
            s = summarize(per.get(name, []))
            row["values"][name] = s.p50 * 1000 if s else None
            if s:
                row["detail"][name] = (
                    f"{s.min * 1000:.1f} / {s.p50 * 1000:.1f} / {s.p95 * 1000:.1f} / {s.max * 1000:.1f}"
                )
        row["target_spec"] = (1.0, "le")
        report.add_ratios(row, names)
        out.append(row)
    return out


def render(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    from benchlib import docs

    names = list(result.get("versions", {}).keys())
    table = rows(result)
    text = report.table_lines(table, names, markdown=False, floors=False)
    md = [
        "## critest -benchmark: cri-tools' benchmarks against the three",
        "",
        docs.run_line(result, result.get("argv", [])),
        f"cri-tools v1.36.0 `critest -benchmark`, {result.get('critest_n')} samples per benchmark, "
        f"{result.get('critest_parallel')} in parallel, {result.get('rounds')} round(s) in a rotating order; "
        "images from the local registry (`-registry-prefix`). Target: every operation's p50 at most the "
        "best peer's. A `(N err)` marks critest runs that did not pass (their samples still count).",
        "",
        docs.versions_line(result),
        "",
        *report.table_lines(table, names, markdown=True, floors=False),
        "",
        "Each operation as min / p50 / p95 / max in ms:",
        "",
        *report.detail_lines(table, names),
    ]
    return text, md
