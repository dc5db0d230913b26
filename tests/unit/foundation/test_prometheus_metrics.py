"""The Prometheus metrics: fed from the bus, served on the loop as text."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.event_feed import ContainerEventFeed
from cri_py.events import EventBus, Timing
from cri_py.metrics.endpoint import MetricsEndpoint
from cri_py.metrics.prometheus import DaemonMetrics
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore
from cri_py.store import Database
from tests.unit.foundation.test_event_feed import _ctr, _pod


def _env(tmp_path: Path) -> tuple[EventBus, SandboxStore, ContainerStore, DaemonMetrics]:
    db = Database(tmp_path / "state.db")
    bus = EventBus()
    pods, ctrs = SandboxStore(db, bus), ContainerStore(db, bus)
    return bus, pods, ctrs, DaemonMetrics(bus, pods, ctrs, ContainerEventFeed(bus, pods, ctrs))


def _sample(text: str, wanted: str) -> float:
    """The value of `name{k="v",...}` (labels in any order) in the text format."""
    name, _, rest = wanted.partition("{")
    labels = dict(item.split("=", 1) for item in rest.rstrip("}").split(",")) if rest else {}
    labels = {k: v.strip('"') for k, v in labels.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {wanted!r} in:\n{text}")


def test_events_and_timings_move_the_counters(tmp_path: Path) -> None:
    bus, pods, ctrs, metrics = _env(tmp_path)
    pods.transition(pods.insert(_pod()), SandboxState.READY)
    a = ctrs.transition(ctrs.insert(_ctr("a" * 64, 1)), ContainerState.CREATED)
    a = ctrs.transition(a, ContainerState.RUNNING)
    ctrs.transition(a, ContainerState.EXITED, exit_code=137, reason="OOMKilled")
    b = ctrs.transition(ctrs.insert(_ctr("b" * 64, 2)), ContainerState.CREATED)
    ctrs.transition(b, ContainerState.RUNNING)
    bus.timings.publish(Timing("grpc", "RunPodSandbox", "RuntimeService unary", 0.03))
    bus.timings.publish(Timing("grpc", "RunPodSandbox", "RuntimeService unary", 0.5, "INTERNAL"))
    bus.timings.publish(Timing("image_pull", "pull", "busybox", 1.5, size=1000))
    bus.timings.publish(Timing("image_pull", "pull", "nope", 0.1, "not_found"))
    with bus.timed("runtime", "create", "runc"):
        pass
    bus.timings.publish(Timing("cni", "ADD", "bridge", 0.02, "CniPluginError"))
    text = generate_latest(metrics.registry).decode()
    rpc = 'grpc_type="unary",grpc_service="RuntimeService",grpc_method="RunPodSandbox"'
    assert _sample(text, f'grpc_server_handled_total{{{rpc},grpc_code="OK"}}') == 1
    assert _sample(text, f'grpc_server_handled_total{{{rpc},grpc_code="INTERNAL"}}') == 1
    assert _sample(text, f'grpc_server_handling_seconds_bucket{{{rpc},grpc_code="OK",le="0.05"}}') == 1
    assert _sample(text, "cri_py_image_pulls_total") == 1
    assert _sample(text, "cri_py_image_pull_bytes_total") == 1000
    assert _sample(text, 'cri_py_image_pull_failures_total{reason="not_found"}') == 1
    assert _sample(text, "cri_py_container_oom_kills_total") == 1
    assert _sample(text, 'cri_py_container_exits_total{reason="OOMKilled"}') == 1
    assert _sample(text, 'cri_py_containers{state="running"}') == 1
    assert _sample(text, 'cri_py_containers{state="exited"}') == 1
    assert _sample(text, 'cri_py_pod_sandboxes{state="ready"}') == 1
    runtime = 'runtime="runc",operation="create",result="ok"'
    assert _sample(text, f"cri_py_runtime_operation_duration_seconds_count{{{runtime}}}") == 1
    cni = 'plugin="bridge",operation="ADD",result="error"'
    assert _sample(text, f"cri_py_cni_operation_duration_seconds_count{{{cni}}}") == 1
    assert "process_resident_memory_bytes" in text
    metrics.close()
    bus.timings.publish(Timing("image_pull", "pull", "busybox", 1.5, size=1000))
    assert _sample(generate_latest(metrics.registry).decode(), "cri_py_image_pulls_total") == 1


def test_the_endpoint_serves_metrics_and_nothing_else(tmp_path: Path) -> None:
    _bus, _pods, _ctrs, metrics = _env(tmp_path)

    async def request(port: int, raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    async def scenario() -> list[bytes]:
        endpoint = MetricsEndpoint(metrics, "127.0.0.1", 0)
        await endpoint.start()
        try:
            return [
                await request(endpoint.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                await request(endpoint.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                await request(endpoint.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                await request(
                    endpoint.port, b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 10000 + b"\r\n\r\n"
                ),
            ]
        finally:
            await endpoint.close()

    ok, missing, post, huge = asyncio.run(scenario())
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type: text/plain; version=" in ok
    assert b"cri_py_containers{" in ok
    assert missing.startswith(b"HTTP/1.1 404") and post.startswith(b"HTTP/1.1 405")
    assert huge.startswith(b"HTTP/1.1 400")
