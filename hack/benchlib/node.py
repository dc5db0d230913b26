"""hack/bench --node: what a node feels all day, at kubelet's default max-pods, against both peers.

1. Each runtime gets `--pods` (110) running pods of one busybox container; memory (daemon plus
   monitors) is read idle and with them.
2. In one rotation over the runtimes: ListPodSandbox, ListContainers, PodSandboxStatus and
   ContainerStatus of a random pod, `--node-n` samples each (p50 and p99).
3. Steady-state CPU: for each runtime in turn, `--poll-seconds` (120) of a kubelet-shaped polling
   load (every 1 s ListPodSandbox + ListContainers; every 10 s ListPodSandboxStats,
   ListContainerStats and ImageFsInfo; each pod's PodSandboxStatus + ContainerStatus once per
   10 s, spread over the ticks), the daemon's and its monitors' CPU from /proc/<pid>/stat, and
   the latency of every polled call under that load. The runtimes not polled in a window give
   their idle CPU with the same pods running.
4. Through the real kubelet (hack/node, see kubelet.py): a Deployment from `kubectl apply` to all
   Ready and its deletion to all gone, on cri-py and on containerd 2.x.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchlib import cpu, report, runtimes
from benchlib.compare import bench_workdir, loadavg, new_result, runtime_names
from benchlib.cri import CriClient, Pod
from benchlib.measure import Bench, Target
from benchlib.memory import measure_memory
from benchlib.stats import summarize
from benchlib.util import log

POLLED = (
    "ListPodSandbox",
    "ListContainers",
    "PodSandboxStatus",
    "ContainerStatus",
    "ListPodSandboxStats",
    "ListContainerStats",
    "ImageFsInfo",
)


def make_pods(client: CriClient, count: int, name: str, concurrency: int = 5) -> tuple[list[Pod], list[str]]:
    made: list[Pod] = []
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            made.append(client.pod_with_container(f"bench-node-{name}-{i}"))
        except Exception as err:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(err).__name__}: {err}"[:300])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return made, errors


def polling_load(client: CriClient, pods: list[Pod], seconds: float) -> dict[str, Any]:
    """kubelet's PLEG relist every second, stats every 10 s, every pod's status once per 10 s."""
    samples: dict[str, list[float]] = {call: [] for call in POLLED}
    errors: dict[str, int] = {}
    late = 0

    def timed(call: str, fn: Callable[[], object]) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001 - a failed poll is counted, the load goes on
            errors[call] = errors.get(call, 0) + 1
            return
        samples[call].append(time.perf_counter() - t0)

    start = time.monotonic()
    tick = 0
    while tick < seconds:
        due = start + tick
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > 1.0:
            late += 1
        timed("ListPodSandbox", client.list_pods)
        timed("ListContainers", client.list_containers)
        if tick % 10 == 0:
            timed("ListPodSandboxStats", client.list_pod_stats)
            timed("ListContainerStats", client.list_container_stats)
            timed("ImageFsInfo", client.image_fs_info)
        for pod in pods[tick % 10 :: 10]:
            timed("PodSandboxStatus", lambda pod=pod: client.pod_status(pod.id))  # type: ignore[misc]
            if pod.containers:
                cid = pod.containers[0]
                timed("ContainerStatus", lambda cid=cid: client.container_status(cid))  # type: ignore[misc]
        tick += 1
    summaries = {call: s.to_dict() if (s := summarize(v)) else None for call, v in samples.items()}
    return {"calls": summaries, "errors": errors, "ticks_late": late, "ticks": tick}


def _memory(target: Target) -> dict[str, int]:
    return measure_memory(target.daemon_pid, target.markers).to_dict()


def latencies(bench: Bench, pods: dict[str, list[Pod]], count: int) -> None:
    rng = random.Random(16)

    def pick_pod(t: Target) -> Pod:
        return rng.choice(pods[t.name])

    def timed(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    bench.interleaved(f"ListPodSandbox at {count} pods", lambda t: timed(t.client.list_pods))
    bench.interleaved(f"ListContainers at {count} pods", lambda t: timed(t.client.list_containers))
    bench.interleaved(
        f"PodSandboxStatus at {count} pods", lambda t: timed(lambda: t.client.pod_status(pick_pod(t).id))
    )
    bench.interleaved(
        f"ContainerStatus at {count} pods",
        lambda t: timed(lambda: t.client.container_status(pick_pod(t).containers[0])),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    cgroup_parent = f"/cri-bench-{os.getpid()}"
    result = new_result("node", args)
    result["n"] = args.node_n
    result["poll_seconds"] = args.poll_seconds
    names = runtime_names(args)
    memory: dict[str, Any] = {}
    cpu_load: dict[str, Any] = {}
    cpu_idle: dict[str, list[dict[str, float]]] = {}
    creation: dict[str, Any] = {}
    result.update(memory=memory, cpu=cpu_load, cpu_idle=cpu_idle, create=creation)
    with bench_workdir(args.workdir_base) as workdir:
        with runtimes.started(
            workdir, cgroup_parent, names, result, keep_logs=args.out / "runtime-logs"
        ) as rt:
            bench = Bench(rt.targets, args.node_n, args.warmup, log)
            pods: dict[str, list[Pod]] = {}
            try:
                for t in rt.targets:
                    time.sleep(1)
                    memory[t.name] = {"idle": _memory(t)}
                    log(f"{t.name}: {args.pods} pods, 5 in flight")
                    t0 = time.perf_counter()
                    pods[t.name], errors = make_pods(t.client, args.pods, t.name)
                    wall = time.perf_counter() - t0
                    creation[t.name] = {"wall_s": wall, "pods": len(pods[t.name]), "errors": errors}
                    log(
                        f"  {len(pods[t.name])} pods in {wall:.1f} s"
                        + (f", {len(errors)} failed" if errors else "")
                    )
                time.sleep(5)  # let start-up work settle before anything is read
                for t in rt.targets:
                    mem = memory[t.name]
                    mem["loaded"] = _memory(t)
                    mem["pods"] = len(pods[t.name])
                    if mem["pods"]:
                        for key in ("rss_kib", "pss_kib"):
                            mem[f"per_pod_{key}"] = (mem["loaded"][key] - mem["idle"][key]) / mem["pods"]
                    log(
                        f"  {t.name}: RSS idle {mem['idle']['rss_kib'] / 1024:.1f} MiB, with {mem['pods']} pods "
                        f"{mem['loaded']['rss_kib'] / 1024:.1f} MiB ({mem['loaded']['monitors']} monitors)"
                    )
                latencies(bench, pods, args.pods)
                order = rt.targets[:]
                for t in order:
                    log(f"{t.name}: kubelet-shaped polling for {args.poll_seconds:.0f} s (load {loadavg()})")
                    before = {u.name: cpu.sample(u.daemon_pid, u.markers) for u in rt.targets}
                    load_before = loadavg()
                    polled = polling_load(t.client, pods[t.name], args.poll_seconds)
                    after = {u.name: cpu.sample(u.daemon_pid, u.markers) for u in rt.targets}
                    used = cpu.usage(before[t.name], after[t.name]).per_minute()
                    cpu_load[t.name] = {**used, **polled, "loadavg": [load_before, loadavg()]}
                    log(
                        f"  {t.name}: daemon {used['daemon_cpu_s_per_min']:.2f} + monitors "
                        f"{used['monitors_cpu_s_per_min']:.2f} CPU-s/min"
                    )
                    for u in rt.targets:
                        if u is not t:
                            idle = cpu.usage(before[u.name], after[u.name]).per_minute()
                            cpu_idle.setdefault(u.name, []).append(idle)
            finally:
                for t in rt.targets:
                    with ThreadPoolExecutor(5) as pool:
                        list(pool.map(lambda p, t=t: _teardown(t.client, p), pods.get(t.name, [])))
                bench.cleanup()
            result["results"] = bench.results
    if not args.no_kubelet:
        from benchlib import kubelet

        result["kubelet"] = kubelet.deployments(args, [n for n in args.kubelet_runtimes.split(",") if n])
    result["wall_s"] = time.monotonic() - started
    result["machine"] = report.machine()
    result["loadavg_end"] = loadavg()
    return result


def _teardown(client: CriClient, pod: Pod) -> None:
    try:
        client.teardown_pod(pod)
    except Exception:  # noqa: BLE001, S110 - bench.cleanup() catches what is left
        pass


# rendering


def _row(
    measure: str, unit: str, values: dict[str, float | None], names: list[str], **extra: Any
) -> report.Row:
    row: report.Row = {
        "measure": measure,
        "unit": unit,
        "values": values,
        "detail": {},
        "errors": {},
        **extra,
    }
    report.add_ratios(row, names)
    return row


def rows(result: dict[str, Any]) -> list[report.Row]:
    names = list(result.get("versions", {}).keys())
    out: list[report.Row] = []
    mem = result.get("memory", {})

    def m(pick: Callable[[dict[str, Any]], float | None]) -> dict[str, float | None]:
        return {n: pick(mem[n]) for n in names if n in mem}

    def kib(path: tuple[str, str]) -> Callable[[dict[str, Any]], float | None]:
        return lambda d: d.get(path[0], {}).get(path[1], 0) / 1024 or None

    pods = result.get("pods", 110)
    # the idle-RSS target is compare's (after all its work); here the daemon has only started
    # and pulled busybox
    out.append(
        _row(
            "RSS before the pods (start-up + one pull)",
            "MiB",
            m(kib(("idle", "rss_kib"))),
            names,
            no_target=True,
        )
    )
    out.append(
        _row(
            f"RSS at {pods} pods (daemon + monitors)",
            "MiB",
            m(kib(("loaded", "rss_kib"))),
            names,
            no_target=True,
        )
    )
    out.append(
        _row(
            f"PSS at {pods} pods (daemon + monitors)",
            "MiB",
            m(kib(("loaded", "pss_kib"))),
            names,
            no_target=True,
        )
    )
    out.append(
        _row(
            "memory per pod (RSS)", "MiB", m(lambda d: (d.get("per_pod_rss_kib") or 0) / 1024 or None), names
        )
    )
    create = result.get("create", {})
    out.append(
        _row(
            f"create {pods} pods, 5 in flight",
            "pods/s",
            {n: c["pods"] / c["wall_s"] for n, c in create.items() if c.get("wall_s")},
            names,
            no_target=True,
        )
    )
    for measure, per in result.get("results", {}).items():
        for q in ("p50", "p99"):
            values = {n: s["summary"][q] * 1000 for n, s in per.items() if s.get("summary") and n in names}
            # at most the best peer: every p50, and ContainerStatus' p99 (what the issue names)
            target = q == "p50" or measure.startswith("ContainerStatus")
            extra: dict[str, Any] = {"target_spec": (1.0, "le")} if target else {"no_target": True}
            out.append(_row(f"{measure} {q}", "ms", values, names, **extra))
    load = result.get("cpu", {})
    for key, label in (
        ("total_cpu_s_per_min", "CPU under polling: daemon + monitors"),
        ("daemon_cpu_s_per_min", "CPU under polling: daemon alone"),
        ("monitors_cpu_s_per_min", "CPU under polling: monitors"),
    ):
        extra = {"target_spec": (1.0, "le")} if key == "total_cpu_s_per_min" else {"no_target": True}
        out.append(_row(label, "CPU-s/min", {n: c[key] for n, c in load.items()}, names, **extra))
    idle = result.get("cpu_idle", {})
    out.append(
        _row(
            f"CPU idle at {pods} pods: daemon + monitors",
            "CPU-s/min",
            {n: sum(w["total_cpu_s_per_min"] for w in ws) / len(ws) for n, ws in idle.items() if ws},
            names,
            no_target=True,
        )
    )
    for call in POLLED:
        for q in ("p50", "p99"):
            values = {
                n: c["calls"][call][q] * 1000 for n, c in load.items() if (c.get("calls") or {}).get(call)
            }
            extra = {} if q == "p50" else {"no_target": True}
            out.append(
                _row(f"under polling: {call} {q}", "ms", values, names, target_spec=(1.0, "le"), **extra)
            )
    return out


def render(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    from benchlib import docs, kubelet

    names = list(result.get("versions", {}).keys())
    table = rows(result)
    text = report.table_lines(table, names, markdown=False, floors=False)
    kube_text, kube_md = kubelet.render(result.get("kubelet"))
    text += ["", *kube_text]
    load = result.get("cpu", {})
    md = [
        "## Node: 110 pods, kubelet-shaped polling, and the real kubelet",
        "",
        docs.run_line(result, result.get("argv", [])),
        f"{result.get('pods')} pods of one busybox container per runtime (all three running at once), "
        f"{result.get('n')} samples per latency measure in one rotation, {result.get('poll_seconds'):.0f} s of "
        "polling per runtime.",
        "",
        docs.versions_line(result),
        "",
        "Load average (1 min) at the start and end of each runtime's polling window: "
        + "; ".join(f"{n} {w['loadavg'][0][0]} → {w['loadavg'][1][0]}" for n, w in load.items())
        + ".",
        "",
        *report.table_lines(table, names, markdown=True, floors=False),
        "",
        *kube_md,
    ]
    return text, md
