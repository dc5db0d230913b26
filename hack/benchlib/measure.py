"""The CRI measurements, each run alternately on every target in one pass."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from benchlib.cri import CriClient, Pod
from benchlib.floors import PULL_MEASURE
from benchlib.memory import measure_memory
from benchlib.stats import summarize

MAX_ERRORS = 3  # a target that fails this often in one measure is skipped for the rest of it


@dataclass
class Target:
    name: str
    client: CriClient
    daemon_pid: int = 0  # 0: memory is not measured
    markers: list[str] = field(default_factory=list)
    big_image: str = ""


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.RpcError):
        return f"{err.code().name}: {err.details()}"
    return f"{type(err).__name__}: {err}"


class Bench:
    def __init__(
        self,
        targets: list[Target],
        n: int,
        warmup: int,
        log: Callable[[str], None],
        floors: dict[str, Callable[[], float]] | None = None,
    ) -> None:
        self.targets = targets
        # measure -> what runc/CNI run by hand take for the same work, timed in the same rotation
        self.floors = floors or {}
        self.n = n
        self.warmup = warmup
        self.log = log
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq = 0

    def _name(self, what: str) -> str:
        self._seq += 1
        return f"bench-{what}-{self._seq}"

    def _slot(self, measure: str, target: Target | str) -> dict[str, Any]:
        name = target if isinstance(target, str) else target.name
        return self.results.setdefault(measure, {}).setdefault(name, {"samples_s": [], "errors": []})

    def _error(self, measure: str, target: Target | str, err: BaseException) -> None:
        slot = self._slot(measure, target)
        slot["errors"].append(_describe(err))
        self.log(f"  {target if isinstance(target, str) else target.name}: {measure}: {_describe(err)}")
        if not isinstance(err, grpc.RpcError):
            self.log(traceback.format_exc(limit=3))

    def _finish(self, measure: str, only: str | None = None) -> None:
        for name, slot in self.results.get(measure, {}).items():
            if only is not None and name != only:
                continue
            summary = summarize(slot["samples_s"])
            slot["summary"] = summary.to_dict() if summary else None
            if summary:
                self.log(
                    f"  {name:10s} {measure}: p50 {summary.p50 * 1000:.1f} ms "
                    f"(min {summary.min * 1000:.1f}, p95 {summary.p95 * 1000:.1f}, max {summary.max * 1000:.1f})"
                )

    def interleaved(
        self,
        measure: str,
        one: Callable[[Target], float],
        iterations: int | None = None,
        warmup: int | None = None,
    ) -> None:
        """Iteration i runs on every target (and the floor), the order rotating so none always goes first.

        The floor runs in the same rotation because this machine's load drifts during a run: a
        floor timed minutes earlier would flatter or wrong the runtimes.
        """
        self.log(f"{measure}")
        iterations = self.n if iterations is None else iterations
        warmup = self.warmup if warmup is None else warmup
        runners: list[tuple[str, Callable[[], float]]] = [
            (t.name, lambda t=t: one(t))  # type: ignore[misc]
            for t in self.targets
        ]
        if measure in self.floors:
            runners.append(("floor", self.floors[measure]))
        for name, _run in runners:
            self._slot(measure, name)
        for i in range(warmup + iterations):
            shift = i % len(runners)
            order = runners[shift:] + runners[:shift]
            for name, run_once in order:
                slot = self._slot(measure, name)
                if len(slot["errors"]) >= MAX_ERRORS:
                    continue
                try:
                    value = run_once()
                except Exception as err:  # noqa: BLE001 - every failure is a reported result
                    self._error(measure, name, err)
                    continue
                if i >= warmup:
                    slot["samples_s"].append(value)
        self._finish(measure)

    def with_setup(
        self,
        measure: str,
        setup: Callable[[Target], Any],
        one: Callable[[Target, Any], float],
        teardown: Callable[[Target, Any], None],
        **kwargs: Any,
    ) -> None:
        state: dict[str, Any] = {}
        for target in self.targets:
            try:
                state[target.name] = setup(target)
            except Exception as err:  # noqa: BLE001
                self._error(measure, target, err)
                self._slot(measure, target)["errors"] += ["set-up failed"] * MAX_ERRORS
        try:
            self.interleaved(measure, lambda t: one(t, state[t.name]), **kwargs)
        finally:
            for target in self.targets:
                if target.name in state:
                    try:
                        teardown(target, state[target.name])
                    except Exception as err:  # noqa: BLE001
                        self._error(measure, target, err)

    # the measures
    def run_pod_sandbox(self) -> None:
        def one(t: Target) -> float:
            t0 = time.perf_counter()
            pod = t.client.run_pod(self._name("run"))
            dt = time.perf_counter() - t0
            t.client.teardown_pod(pod)
            return dt

        self.interleaved("RunPodSandbox", one)

    def create_start(self) -> None:
        def one(t: Target, pod: Pod) -> float:
            name = self._name("cs")
            t0 = time.perf_counter()
            cid = t.client.create_container(pod, name)
            t.client.start_container(cid)
            dt = time.perf_counter() - t0
            t.client.stop_container(cid)
            t.client.remove_container(cid)
            return dt

        self.with_setup(
            "CreateContainer+StartContainer",
            lambda t: t.client.run_pod(self._name("cs-pod")),
            one,
            lambda t, pod: t.client.teardown_pod(pod),
        )

    def lifecycle(self) -> None:
        def one(t: Target) -> float:
            t0 = time.perf_counter()
            t.client.lifecycle(self._name("life"))
            return time.perf_counter() - t0

        self.interleaved("full lifecycle", one)

    def exec_sync(self) -> None:
        def one(t: Target, pod: Pod) -> float:
            t0 = time.perf_counter()
            code = t.client.exec_sync(pod.containers[0], ["true"])
            dt = time.perf_counter() - t0
            if code != 0:
                raise RuntimeError(f"ExecSync true exited {code}")
            return dt

        self.with_setup(
            "ExecSync true",
            lambda t: t.client.pod_with_container(self._name("exec")),
            one,
            lambda t, pod: t.client.teardown_pod(pod),
        )

    def pull(self, iterations: int) -> None:
        def one(t: Target) -> float:
            if t.client.has_image(t.big_image):
                t.client.remove_image(t.big_image)
            t0 = time.perf_counter()
            t.client.pull(t.big_image)
            dt = time.perf_counter() - t0
            t.client.remove_image(t.big_image)
            return dt

        self.interleaved(PULL_MEASURE, one, iterations=iterations, warmup=0)

    def throughput(self, total: int, concurrency: int) -> None:
        measure = f"throughput {total} lifecycles, {concurrency} in flight"
        self.log(measure)
        for target in self.targets:
            errors: list[str] = []

            def life(i: int, t: Target = target, errors: list[str] = errors) -> None:
                try:
                    t.client.lifecycle(self._name("tp"))
                except Exception as err:  # noqa: BLE001
                    errors.append(_describe(err))

            t0 = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(life, range(total)))
            wall = time.perf_counter() - t0
            ok = total - len(errors)
            self.results.setdefault(measure, {})[target.name] = {
                "wall_s": wall,
                "pods_per_s": ok / wall,
                "errors": errors,
                "completed": ok,
            }
            self.log(
                f"  {target.name:10s} {wall:.2f} s, {ok / wall:.2f} pods/s, {len(errors)} errors"
                + (f" (first: {errors[0]})" if errors else "")
            )
            if errors:
                target.client.remove_bench_pods()

    def many_pods(self, pods: int, concurrency: int = 5) -> None:
        """Memory idle and with `pods` running pods, and List latency at that size."""
        self.log(f"memory and List with {pods} pods x 1 container")
        for target in self.targets:
            mem: dict[str, Any] = {"errors": []}
            self.results.setdefault("memory", {})[target.name] = mem
            if target.daemon_pid:
                time.sleep(1)  # let the previous measure's exits settle
                mem["idle"] = measure_memory(target.daemon_pid, target.markers).to_dict()
            made: list[Pod] = []
            errors: list[str] = mem["errors"]

            def make(i: int, t: Target = target, made: list[Pod] = made, errors: list[str] = errors) -> None:
                try:
                    made.append(t.client.pod_with_container(self._name("many")))
                except Exception as err:  # noqa: BLE001
                    errors.append(_describe(err))

            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(make, range(pods)))
            mem["pods"] = len(made)
            if target.daemon_pid and made:
                time.sleep(1)
                mem["loaded"] = measure_memory(target.daemon_pid, target.markers).to_dict()
                for key in ("rss_kib", "pss_kib"):
                    mem[f"per_pod_{key}"] = (mem["loaded"][key] - mem["idle"][key]) / len(made)
                self.log(
                    f"  {target.name:10s} idle RSS {mem['idle']['rss_kib'] / 1024:.1f} MiB, "
                    f"{len(made)} pods {mem['loaded']['rss_kib'] / 1024:.1f} MiB "
                    f"({mem['per_pod_rss_kib'] / 1024:.2f} MiB RSS, {mem['per_pod_pss_kib'] / 1024:.2f} MiB "
                    f"PSS per pod, {mem['loaded']['monitors']} monitors)"
                )
            if errors:
                self.log(f"  {target.name}: {len(errors)} pods failed, first: {errors[0]}")
            for measure, call in (
                ("ListContainers", target.client.list_containers),
                ("ListPodSandbox", target.client.list_pods),
            ):
                key = f"{measure} at {pods} pods"
                slot = self._slot(key, target)
                for i in range(self.warmup + self.n):
                    t0 = time.perf_counter()
                    try:
                        call()
                    except Exception as err:  # noqa: BLE001
                        self._error(key, target, err)
                        break
                    if i >= self.warmup:
                        slot["samples_s"].append(time.perf_counter() - t0)
                self._finish(key, target.name)
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda p, t=target: _quiet_teardown(t.client, p), made))

    def cleanup(self) -> None:
        for target in self.targets:
            try:
                left = target.client.remove_bench_pods()
                if left:
                    self.log(f"  {target.name}: removed {left} pods left by failed steps")
            except Exception as err:  # noqa: BLE001
                self.log(f"  {target.name}: cleanup failed: {_describe(err)}")


def _quiet_teardown(client: CriClient, pod: Pod) -> None:
    try:
        client.teardown_pod(pod)
    except grpc.RpcError:
        pass
