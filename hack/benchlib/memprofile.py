"""hack/bench --memory: what cri-py keeps resident, and after which work it grows.

cri-py runs under memtrace.py (tracemalloc from the first import); a dump is taken fresh, after a
busybox pull, after pod lifecycles with exec, after the 100 MB pull and removal, and after 110
pods came and went. Each step prints RSS (anonymous / file-backed), the mappings that grew and
the Python allocations by package that grew, and which modules were loaded by then.
tracemalloc itself costs memory: compare steps with each other, not with a daemon run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib.compare import bench_workdir
from benchlib.images import push_bench_images
from benchlib.session import wrapped_cripy

HERE = Path(__file__).resolve().parent


def _dump(pid: int, out: Path, seen: int) -> dict[str, Any]:
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) > seen:
            report: dict[str, Any] = json.loads(lines[seen])
            return report
        time.sleep(0.1)
    raise TimeoutError("cri-py wrote no memory report")


def _grew(before: dict[str, int], after: dict[str, int], floor: int = 256) -> list[str]:
    keys = set(before) | set(after)
    deltas = sorted(((after.get(k, 0) - before.get(k, 0), k) for k in keys), reverse=True)
    return [f"{d / 1024:+.1f} MiB {k}" for d, k in deltas if abs(d) >= floor][:12]


def run(args: argparse.Namespace) -> int:
    steps: list[tuple[str, dict[str, Any]]] = []
    with bench_workdir(args.workdir_base) as workdir:
        out = workdir / "memory.jsonl"
        os.environ["MEM_OUT"] = str(out)
        os.environ["MEM_FRAMES"] = "0" if args.no_tracemalloc else "1"
        wrapper = [sys.executable, str(HERE / "memtrace.py")]
        with wrapped_cripy(workdir, wrapper, push_bench_images, lambda images: images.busybox) as session:
            client, images, pid = session.client, session.images, session.daemon.pid
            time.sleep(2)
            steps.append(("fresh", _dump(pid, out, len(steps))))
            client.pull(images.busybox)
            steps.append(("busybox pulled", _dump(pid, out, len(steps))))
            for i in range(10):
                pod = client.pod_with_container(f"bench-mem-{i}")
                client.exec_sync(pod.containers[0], ["true"])
                client.teardown_pod(pod)
            steps.append(("10 pods with exec, gone", _dump(pid, out, len(steps))))
            client.pull(images.big)
            client.remove_image(images.big)
            steps.append(("100 MB pulled and removed", _dump(pid, out, len(steps))))
            with ThreadPoolExecutor(5) as pool:
                pods = list(pool.map(lambda i: client.pod_with_container(f"bench-mem-many-{i}"), range(110)))
            steps.append(("110 pods running", _dump(pid, out, len(steps))))
            with ThreadPoolExecutor(5) as pool:
                list(pool.map(client.teardown_pod, pods))
            time.sleep(2)
            steps.append(("110 pods gone", _dump(pid, out, len(steps))))
    previous: dict[str, Any] | None = None
    for name, report in steps:
        st = report["status"]
        print(
            f"== {name}: VmRSS {st['VmRSS']} (anon {st['RssAnon']}, file {st['RssFile']}), "
            f"threads {st['Threads']}, Python objects {report['tracemalloc_kib'] / 1024:.1f} MiB "
            f"(peak {report['tracemalloc_peak_kib'] / 1024:.1f})"
        )
        if previous is None:
            print(
                "   mappings: "
                + "; ".join(f"{v / 1024:.1f} MiB {k}" for k, v in list(report["mappings_kib"].items())[:10])
            )
            print(
                "   Python by package: "
                + "; ".join(
                    f"{v / 1024:.1f} MiB {k}" for k, v in list(report["python_by_package_kib"].items())[:15]
                )
            )
        else:
            print("   mappings grew: " + "; ".join(_grew(previous["mappings_kib"], report["mappings_kib"])))
            print(
                "   Python grew: "
                + "; ".join(_grew(previous["python_by_package_kib"], report["python_by_package_kib"], 128))
            )
            new = sorted({m.split(".")[0] for m in set(report["modules"]) - set(previous["modules"])})
            print(f"   newly imported: {', '.join(new)}")
        previous = report
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory-latest.json").write_text(json.dumps(dict(steps), indent=1))
    return 0
