"""Measure a CRI runtime, or compare cri-py with containerd 2.x and CRI-O in one run.

    hack/bench --compare [--n 20] [--warmup 3] [--pods 110] [--debian-containerd] [--write-docs] [--profile]
    hack/bench --node [--node-pods 110] [--poll-seconds 120] [--write-docs]
    hack/bench --critest [--write-docs]
    hack/bench --spans [--n 20]                  where cri-py's time goes, per RPC
    hack/bench --memory                          what cri-py keeps resident, step by step
    hack/bench --endpoint unix:///run/x.sock --busybox-image REF [--big-image REF]
               [--daemon-pid PID --monitor-marker DIR]
    hack/bench --render bench-results/latest.json [--write-docs]
    hack/bench --rounds bench-results/compare-*.json ... [--write-docs]   medians of several runs

--compare starts a local test registry (hack/test-registry, images from hack/build-test-images),
cri-py (.venv/bin/cri-py serve with a temp config), containerd 2.x and CRI-O (built by
hack/peers/build when absent; hack/peer-containerd's and hack/peer-crio's set-up), each with its
own bridge and /24 in 10.251.0.0/16 behind an iptables FORWARD guard, measures the floors (runc
and the CNI bridge plugin run by hand), then every CRI measure in one rotation over the runtimes
and the floor, prints one table (every ratio against each peer and the best of them) and writes
JSON + Markdown to bench-results/. --node measures the three at kubelet's 110 pods: memory, List
and status latencies, the daemons' CPU under a kubelet-shaped polling load, and (with hack/node)
a Deployment through the real kubelet. --critest runs cri-tools' `critest -benchmark` against
each. --rounds puts saved runs side by side: each target's ratio per round and their median (one
run's ratio near a target flips with this shared machine's load). Everything a run made is removed at the end, also after a failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import docs, report
from benchlib.compare import (
    FLOOR_OF,
    MEASURES,
    bench_workdir,
    compare,
    floor_kit,
    run_floors,
    run_measures,
)
from benchlib.cri import CriClient
from benchlib.floors import interleaved_floors
from benchlib.measure import Bench, Target
from benchlib.network import add_guard, remove_guard
from benchlib.registry import LocalRegistry
from benchlib.runtimes import leftovers
from benchlib.session import wrapped_cripy
from benchlib.util import log

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hack/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--compare", action="store_true", help="start cri-py, containerd 2.x and CRI-O and compare them"
    )
    mode.add_argument(
        "--node",
        action="store_true",
        help="the three at kubelet's max-pods: memory, List/status latency, CPU under polling, kubelet",
    )
    mode.add_argument("--critest", action="store_true", help="critest -benchmark against the three")
    mode.add_argument(
        "--memory",
        action="store_true",
        help="cri-py only: what stays resident after start-up and after each kind of work (tracemalloc)",
    )
    mode.add_argument("--endpoint", help="measure one running CRI endpoint (unix:///path)")
    mode.add_argument(
        "--render", type=Path, help="print (and with --write-docs publish) a saved result JSON again"
    )
    mode.add_argument(
        "--rounds",
        type=Path,
        nargs="+",
        help="saved results of several runs: each measure's ratio per round and the median",
    )
    mode.add_argument(
        "--spans",
        action="store_true",
        help="cri-py only: serial lifecycles with every subprocess and worker-thread call timed per RPC",
    )
    parser.add_argument("--n", type=int, default=20, help="measured iterations per latency measure")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured iterations first")
    parser.add_argument(
        "--pods",
        type=int,
        default=110,
        help="pods (1 container each) for List and memory (kubelet's max-pods)",
    )
    parser.add_argument(
        "--debian-containerd",
        action="store_true",
        help="--compare/--node: Debian's containerd 1.6 as a fourth column (no target is set against it)",
    )
    parser.add_argument(
        "--node-n", type=int, default=200, help="--node: samples per latency measure at 110 pods"
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=120, help="--node: the polling load per runtime"
    )
    parser.add_argument(
        "--no-kubelet", action="store_true", help="--node: skip the Deployment through the real kubelet"
    )
    parser.add_argument(
        "--kubelet-runtimes",
        default="cri-py,containerd",
        help="--node: the runtimes kubelet runs the Deployment on (comma-separated)",
    )
    parser.add_argument("--replicas", type=int, default=30, help="--node: the Deployment's replicas")
    parser.add_argument("--kubelet-rounds", type=int, default=3, help="--node: Deployment rounds per runtime")
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="--memory: RSS as it is, without Python allocation tracing",
    )
    parser.add_argument("--critest-n", type=int, default=20, help="--critest: samples per benchmark")
    parser.add_argument("--critest-parallel", type=int, default=2, help="--critest: samples in parallel")
    parser.add_argument(
        "--critest-rounds", type=int, default=1, help="--critest: runs per runtime (rotating)"
    )
    parser.add_argument("--throughput-total", type=int, default=30)
    parser.add_argument("--throughput-concurrency", type=int, default=10)
    parser.add_argument("--pull-n", type=int, default=3, help="cold pulls of the 100 MB image")
    parser.add_argument(
        "--only", default=",".join(MEASURES), help=f"comma-separated subset of {','.join(MEASURES)}"
    )
    parser.add_argument("--no-floors", action="store_true")
    parser.add_argument("--busybox-image", help="--endpoint: a busybox reference the endpoint can pull")
    parser.add_argument("--big-image", help="--endpoint: the 100 MB image reference (else no pull measure)")
    parser.add_argument("--daemon-pid", type=int, default=0, help="--endpoint: measure this daemon's memory")
    parser.add_argument(
        "--monitor-marker",
        action="append",
        default=[],
        help="--endpoint: a string in its monitors' command lines (its root dir)",
    )
    parser.add_argument("--name", default="runtime", help="--endpoint: the column name")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="--compare: run cri-py under py-spy record; the profile goes to bench-results/",
    )
    parser.add_argument(
        "--cri-py-wrapper",
        type=Path,
        help="--compare/--spans: run cri-py under this Python file (it gets `<cri-py> serve --config F`), "
        "to measure a patch before editing the daemon",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="--compare/--node/--critest: also write this mode's part of docs/benchmarks.md",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--workdir-base", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(MEASURES)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}")
    if args.endpoint and not args.busybox_image:
        parser.error("--endpoint needs --busybox-image")
    return args


def single(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    cgroup_parent = f"/cri-bench-{os.getpid()}"
    result: dict[str, Any] = {
        "mode": "endpoint",
        "endpoint": args.endpoint,
        "n": args.n,
        "warmup": args.warmup,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    with bench_workdir(args.workdir_base) as workdir:
        floors: dict[str, float] = {}
        client = CriClient(args.endpoint, args.busybox_image, workdir / "pod-logs", cgroup_parent)
        stack = contextlib.ExitStack()
        try:
            add_guard()
            stack.callback(remove_guard)
            kit = stack.enter_context(floor_kit(workdir, cgroup_parent)) if not args.no_floors else None
            if kit is not None:
                floors, result["floors_detail"] = run_floors(*kit, args.n, args.warmup)
            result["floors"] = floors
            client.wait_ready()
            result["versions"] = {args.name: client.version()}
            client.pull(args.busybox_image)
            target = Target(args.name, client, args.daemon_pid, args.monitor_marker, args.big_image or "")
            bench = Bench([target], args.n, args.warmup, log, interleaved_floors(*kit) if kit else None)
            run_measures(bench, args)
            result["results"] = bench.results
        finally:
            stack.close()
            client.close()
            result["leftovers"] = leftovers(workdir, cgroup_parent, [])
    result["wall_s"] = time.monotonic() - started
    result["machine"] = report.machine()
    return result


def spans_mode(args: argparse.Namespace) -> int:
    from benchlib import spans

    with bench_workdir(args.workdir_base) as workdir:
        span_file = workdir / "spans.jsonl"
        os.environ["SPAN_OUT"] = str(span_file)
        # a --cri-py-wrapper of one's own must call spantrace.install() itself
        script = args.cri_py_wrapper or Path(spans.__file__).with_name("spantrace.py")
        wrapper = [sys.executable, str(Path(script).resolve())]

        def busybox_image(registry: LocalRegistry) -> str:
            return registry.build_test_images(["busybox"])["busybox"]

        with wrapped_cripy(workdir, wrapper, busybox_image, lambda ref: ref) as session:
            session.client.pull(session.images)
            marks = spans.record(session.client, args.n, args.warmup)
        left = session.left
        result = spans.breakdown(marks, span_file)
    print("\n".join(spans.lines(result)))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    (args.out / f"spans-{stamp}.json").write_text(json.dumps(result, indent=2))
    log(f"wrote {args.out}/spans-{stamp}.json")
    return 1 if left else 0


def render(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The terminal table and the docs section of a saved result, whatever its mode."""
    if result.get("mode") == "node":
        from benchlib import node

        return node.render(result)
    if result.get("mode") == "critest":
        from benchlib import critest

        return critest.render(result)
    names = list(result.get("versions", {}).keys()) or ["cri-py"]
    rows = report.build_rows(result.get("results", {}), result.get("floors", {}), FLOOR_OF, names)
    result["rows"] = rows
    text = report.table_lines(rows, names, markdown=False)
    md = compare_section(result, rows, names) if result.get("mode") == "compare" else []
    return text, md


def compare_section(result: dict[str, Any], rows: list[report.Row], names: list[str]) -> list[str]:
    floors = result.get("floors_detail", {})
    return [
        "## Compare: one rotation of cri-py, containerd 2.x and CRI-O",
        "",
        docs.run_line(result, result.get("argv", [])),
        f"N={result['n']}, warm-up {result['warmup']}, {result.get('pods')} pods for List and memory.",
        "",
        docs.versions_line(result),
        "",
        "p50 per runtime; `cri-py/<peer>` the ratio to each peer; `vs best peer` the ratio the target is "
        "set on; floor = the same work done by hand with runc and the CNI bridge plugin, timed in the "
        "same rotation.",
        "",
        *report.table_lines(rows, names, markdown=True),
        "",
        "Each latency as min / p50 / p95 / max in ms:",
        "",
        *report.detail_lines(rows, names),
        "",
        "Floors measured on their own before the rotations (ms): "
        + "; ".join(f"{k} {v['p50'] * 1000:.1f}" for k, v in floors.items())
        + ". RunPodSandbox's floor = half a netns add+delete + CNI bridge ADD + `runc run -d`; Create+Start = "
        "`runc run -d` of busybox `sleep 3600`; full lifecycle = netns + CNI ADD + DEL + 2 x (`runc run -d` + "
        "SIGKILL + wait + `runc delete`); ExecSync = `runc exec <id> true`; PullImage = `skopeo copy` to a "
        "directory (download and digest checks, no unpacking).",
    ]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks remove daemons, mounts, rules and bridges
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0 and not (args.render or args.rounds):
        log("hack/bench needs root (runtimes, mounts, netns, iptables)")
        return 2
    if args.spans:
        return spans_mode(args)
    if args.memory:
        from benchlib import memprofile

        return memprofile.run(args)
    if args.rounds:
        from benchlib import rounds

        results = [json.loads(path.read_text()) for path in args.rounds]
        print("\n".join(rounds.render(results, markdown=False)))
        if args.write_docs:
            md = [
                "## Rounds: every target as the median of the rounds' ratios",
                "",
                rounds.INTRO,
                "",
                *rounds.render(results, markdown=True),
            ]
            log(f"wrote {docs.write_section('rounds', md)}")
        return 0
    if args.render:
        result = json.loads(args.render.read_text())
        text, md = render(result)
        print("\n".join(text))
        if args.write_docs and md:
            log(f"wrote {docs.write_section(result['mode'], md)}")
        return 0
    if args.compare:
        result = compare(args)
    elif args.node:
        from benchlib import node

        result = node.run(args)
    elif args.critest:
        from benchlib import critest

        result = critest.run(args)
    else:
        result = single(args)
    result["argv"] = argv
    text, md = render(result)
    print("\n".join(text))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("+0000", "Z")
    mode = result["mode"]
    (args.out / f"{mode}-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    for latest in (f"latest-{mode}.json", "latest.json"):  # latest.json: whichever mode ran last
        (args.out / latest).write_text(json.dumps(result, indent=2, default=str))
    log(f"wrote {args.out}/{mode}-{stamp}.json ({result['wall_s']:.0f} s)")
    if args.write_docs and md:
        log(f"wrote {docs.write_section(mode, md)}")
    return 1 if result.get("leftovers") else 0
