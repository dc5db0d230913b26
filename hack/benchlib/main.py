"""Measure a CRI runtime, or compare cri-py with containerd's CRI in one run.

    hack/bench --compare [--n 20] [--warmup 3] [--write-docs] [--profile]
    hack/bench --spans [--n 20]                  where cri-py's time goes, per RPC
    hack/bench --endpoint unix:///run/x.sock --busybox-image REF [--big-image REF]
               [--daemon-pid PID --monitor-marker DIR]
    hack/bench --render bench-results/latest.json [--write-docs]

--compare starts a local test registry (hack/test-registry, images from hack/build-test-images),
cri-py (.venv/bin/cri-py serve with a temp config) and containerd (hack/peer-containerd's
setup), each with its own bridge and /24 in 10.251.0.0/16 behind an iptables FORWARD guard,
measures the floors (runc and the CNI bridge plugin run by hand), then every CRI measure in one
rotation over both runtimes and the floor, prints one table and writes JSON + Markdown to
bench-results/. Everything it made is removed at the end, also after a failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlib import report
from benchlib.cri import CriClient
from benchlib.cripy import CriPyDaemon
from benchlib.floors import PULL_MEASURE, CniFloor, RuncFloor, collect, interleaved_floors
from benchlib.images import push_bench_images
from benchlib.measure import Bench, Target
from benchlib.network import add_guard, bench_net, remove_guard
from benchlib.peer import ContainerdPeer
from benchlib.registry import LocalRegistry
from benchlib.stats import summarize
from benchlib.util import mounts_under, pids_mentioning, remove_cgroup_tree

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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hack/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compare", action="store_true", help="start cri-py and containerd and compare them")
    mode.add_argument("--endpoint", help="measure one running CRI endpoint (unix:///path)")
    mode.add_argument(
        "--render", type=Path, help="print (and with --write-docs publish) a saved result JSON again"
    )
    mode.add_argument(
        "--spans",
        action="store_true",
        help="cri-py only: serial lifecycles with every subprocess and worker-thread call timed per RPC",
    )
    parser.add_argument("--n", type=int, default=20, help="measured iterations per latency measure")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured iterations first")
    parser.add_argument("--pods", type=int, default=50, help="pods (1 container each) for List and memory")
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
    parser.add_argument("--write-docs", action="store_true", help="--compare: also write docs/benchmarks.md")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--workdir-base", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(MEASURES)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}")
    if args.endpoint and not args.busybox_image:
        parser.error("--endpoint needs --busybox-image")
    return args


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


def leftovers(workdir: Path, cgroup_parent: str, bridges: list[str]) -> list[str]:
    found = [f"mount {m}" for m in mounts_under(workdir)]
    found += [f"process {p}" for p in pids_mentioning(str(workdir)) if p != os.getpid()]
    found += [f"cgroup {c}" for c in remove_cgroup_tree(cgroup_parent)]
    found += [f"bridge {b}" for b in bridges if Path(f"/sys/class/net/{b}").exists()]
    return found


@contextlib.contextmanager
def bench_workdir(base: Path) -> Iterator[Path]:
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cri-bench-", dir=base)).resolve()
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compare(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    cgroup_parent = f"/cri-bench-{os.getpid()}"
    result: dict[str, Any] = {
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "mode": "compare",
        "n": args.n,
        "warmup": args.warmup,
        "pods": args.pods,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    with bench_workdir(args.workdir_base) as workdir:
        registry = LocalRegistry(workdir / "registry")
        net_py, net_ctd = bench_net("cripy", 1, workdir), bench_net("ctrd", 2, workdir)
        cripy: CriPyDaemon | None = None
        peer: ContainerdPeer | None = None
        clients: list[CriClient] = []
        stack = contextlib.ExitStack()
        add_guard()
        try:
            registry.start()
            log(f"registry on {registry.host}; building and pushing the test images")
            images = push_bench_images(registry)
            result["images"] = {"busybox": images.busybox, "pause": images.pause, "big": images.big}
            floors: dict[str, float] = {}
            kit = stack.enter_context(floor_kit(workdir, cgroup_parent)) if not args.no_floors else None
            if kit is not None:
                floors, result["floors_detail"] = run_floors(*kit, args.n, args.warmup)
            result["floors"] = floors
            wrapper = []
            if args.profile:
                args.out.mkdir(parents=True, exist_ok=True)
                result["profile"] = str(args.out / "cri-py-profile.speedscope.json")
                wrapper = [
                    str(REPO / ".venv/bin/py-spy"),
                    "record",
                    "--nonblocking",
                    "--format",
                    "speedscope",
                    "--rate",
                    "200",
                    "-o",
                    result["profile"],
                    "--",
                ]
            if args.cri_py_wrapper:
                wrapper += [sys.executable, str(args.cri_py_wrapper.resolve())]
                result["cri_py_wrapper"] = str(args.cri_py_wrapper)
            cripy = CriPyDaemon(workdir / "cri-py", registry.host, net_py, cgroup_parent, wrapper=wrapper)
            cripy.start()
            peer = ContainerdPeer(workdir / "containerd", registry.host, images.pause, net_ctd)
            peer.start()
            log(f"cri-py pid {cripy.pid} on {cripy.endpoint}; containerd pid {peer.pid} on {peer.endpoint}")
            targets = []
            for name, endpoint, pid, marker in (
                ("cri-py", cripy.endpoint, cripy.pid, cripy.workdir),
                ("containerd", peer.endpoint, peer.pid, peer.workdir),
            ):
                client = CriClient(endpoint, images.busybox, workdir / "pod-logs" / name, cgroup_parent)
                clients.append(client)
                client.wait_ready()
                targets.append(Target(name, client, pid, [str(marker)], images.big))
            result["versions"] = {t.name: t.client.version() for t in targets}
            for target in targets:
                t0 = time.perf_counter()
                target.client.pull(images.busybox)
                log(f"  {target.name}: pulled busybox in {(time.perf_counter() - t0) * 1000:.0f} ms")
            peer_client = targets[1].client
            peer_client.pull(images.pause)
            floors = interleaved_floors(*kit, pull_ref=images.big, workdir=workdir) if kit else None
            bench = Bench(targets, args.n, args.warmup, log, floors)
            run_measures(bench, args)
            result["results"] = bench.results
        finally:
            stack.close()
            for client in clients:
                client.close()
            if cripy is not None:
                cripy.stop()
            if peer is not None:
                peer.stop()
            registry.stop()
            for net in (net_py, net_ctd):
                net.remove_bridge()
            remove_guard()
            left = leftovers(workdir, cgroup_parent, [net_py.bridge, net_ctd.bridge])
            result["leftovers"] = left
            if left:
                log(f"LEFT BEHIND: {left}")
    result["wall_s"] = time.monotonic() - started
    result["machine"] = report.machine()
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


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

    cgroup_parent = f"/cri-bench-{os.getpid()}"
    with bench_workdir(args.workdir_base) as workdir:
        registry = LocalRegistry(workdir / "registry")
        net = bench_net("cripy", 1, workdir)
        span_file = workdir / "spans.jsonl"
        os.environ["SPAN_OUT"] = str(span_file)
        # a --cri-py-wrapper of one's own must call spantrace.install() itself
        script = args.cri_py_wrapper or Path(spans.__file__).with_name("spantrace.py")
        wrapper = [sys.executable, str(Path(script).resolve())]
        cripy = CriPyDaemon(workdir / "cri-py", "", net, cgroup_parent, wrapper=wrapper)
        add_guard()
        try:
            registry.start()
            busybox = registry.build_test_images(["busybox"])["busybox"]
            cripy.registry_host = registry.host
            cripy.start()
            client = CriClient(cripy.endpoint, busybox, workdir / "pod-logs", cgroup_parent)
            try:
                client.wait_ready()
                client.pull(busybox)
                marks = spans.record(client, args.n, args.warmup)
            finally:
                client.remove_bench_pods()
                client.close()
        finally:
            cripy.stop()
            registry.stop()
            net.remove_bridge()
            remove_guard()
            left = leftovers(workdir, cgroup_parent, [net.bridge])
            if left:
                log(f"LEFT BEHIND: {left}")
        result = spans.breakdown(marks, span_file)
    print("\n".join(spans.lines(result)))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    (args.out / f"spans-{stamp}.json").write_text(json.dumps(result, indent=2))
    log(f"wrote {args.out}/spans-{stamp}.json")
    return 1 if left else 0


def render(result: dict[str, Any], args: argparse.Namespace) -> tuple[list[str], list[str]]:
    names = list(result.get("versions", {}).keys()) or ["cri-py", "containerd"]
    rows = report.build_rows(result.get("results", {}), result.get("floors", {}), FLOOR_OF, names)
    result["rows"] = rows
    text = report.table_lines(rows, names, markdown=False)
    md = report.table_lines(rows, names, markdown=True)
    md += ["", "Each latency as min / p50 / p95 / max in ms:", "", *report.detail_lines(rows, names)]
    return text, md


def docs_page(result: dict[str, Any], md: list[str], argv: list[str]) -> str:
    machine = result["machine"]
    floors = result.get("floors_detail", {})
    floor_lines = [
        f"| {k} | {v['p50'] * 1000:.1f} | {v['min'] * 1000:.1f} | {v['p95'] * 1000:.1f} |"
        for k, v in floors.items()
    ]
    versions = ", ".join(f"{k}: {v}" for k, v in result.get("versions", {}).items())
    return (
        "\n".join(
            [
                "# Benchmarks: cri-py against containerd's CRI",
                "",
                f"Latest run: {result['started']}, `hack/bench {' '.join(argv)}` "
                f"(N={result['n']}, warm-up {result['warmup']}, {result.get('pods', 50)} pods), "
                f"wall time {result['wall_s']:.0f} s; load average (1/5/15 min) "
                f"{'/'.join(result.get('loadavg_start', []))} at the start, "
                f"{'/'.join(result.get('loadavg_end', []))} at the end.",
                "",
                f"Machine: {machine['os']}, kernel {machine['kernel']}, {machine['cpu']}, {machine['memory']}; "
                f"{machine['runc']}; {machine['conmon']}; {machine['containerd']}; Python {machine['python']}.",
                f"Runtimes: {versions}.",
                "",
                "## Results (p50; ratio = cri-py / containerd; floor = what runc and CNI take run by hand)",
                "",
                *md,
                "",
                "## Floors (ms)",
                "",
                "| floor | p50 | min | p95 |",
                "|---|---|---|---|",
                *floor_lines,
                "",
                "This table was measured before the runtimes started. The floor column of the results is "
                "measured again inside each measure's rotation, doing the same work by hand: RunPodSandbox = "
                "half of a netns add+delete + CNI bridge ADD + `runc run -d` (a pause process); "
                "Create+Start = `runc run -d` of busybox `sleep 3600`; full lifecycle = netns + CNI ADD + DEL + "
                "2 x (`runc run -d` + SIGKILL + wait for the exit + `runc delete`), a pod with a pause process "
                "and one container; ExecSync = `runc exec <id> true`.",
                "",
                "## Reproduce",
                "",
                "```",
                "make install                          # the venv and the Debian packages",
                "hack/bench --compare --write-docs     # as root; ~2 min here (make bench: the same without docs)",
                "hack/bench --spans --n 20             # cri-py's RPCs broken down (subprocesses, threads, loop stalls)",
                "hack/bench --compare --profile        # cri-py under py-spy record (pip install py-spy into .venv)",
                "hack/bench --compare --cri-py-wrapper hack/benchlib/prototypes.py   # the prototyped fixes",
                "hack/bench --endpoint unix:///run/x.sock --busybox-image REF      # any running CRI endpoint",
                "```",
                "",
                "What the bench does: see the README section and `hack/bench --help`. Both runtimes run at the "
                "same time, each with its own root, socket, bridge and /24, the same runc, CNI plugins, registry "
                "and images; every latency measure runs its iterations in one rotation over the two and the floor. Memory is the RSS "
                "(and PSS) of the daemon plus every monitor it started (conmon / containerd-shim), found by "
                "walking the process tree and matching the monitors' command lines to the daemon's directories; "
                "container processes (pause, sleep) are not counted.",
                "",
                *NOTES,
            ]
        )
        + "\n"
    )


# findings written by hand after reading the profile; kept in the page across runs
NOTES_FILE = REPO / "hack" / "benchlib" / "notes.md"
NOTES = NOTES_FILE.read_text().splitlines() if NOTES_FILE.exists() else []


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks remove daemons, mounts, rules and bridges
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0 and not args.render:
        log("hack/bench needs root (runtimes, mounts, netns, iptables)")
        return 2
    if args.spans:
        return spans_mode(args)
    if args.render:
        result = json.loads(args.render.read_text())
        text, md = render(result, args)
        print("\n".join(text))
        if args.write_docs and result.get("mode") == "compare":
            (REPO / "docs" / "benchmarks.md").write_text(docs_page(result, md, result.get("argv", [])))
            log("wrote docs/benchmarks.md")
        return 0
    result = compare(args) if args.compare else single(args)
    result["argv"] = argv
    text, md = render(result, args)
    print("\n".join(text))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("+0000", "Z")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"bench-{stamp}.md").write_text("\n".join(md) + "\n")
    (args.out / "latest.json").write_text(json.dumps(result, indent=2, default=str))
    log(f"wrote {args.out}/bench-{stamp}.json and .md ({result['wall_s']:.0f} s)")
    if args.write_docs and args.compare:
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "benchmarks.md").write_text(docs_page(result, md, argv))
        log("wrote docs/benchmarks.md")
    return 1 if result.get("leftovers") else 0
