"""GetContainerEvents end to end: crictl events, several subscribers, exits seen after a restart."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.crictl import crictl, crictl_binary, json_objects
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    pod_config,
    pull,
    run_pod,
    start,
    wait_state,
)

registry = registry_fixtures.registry

CREATED, STARTED, STOPPED, DELETED = (
    api_pb2.CONTAINER_CREATED_EVENT,
    api_pb2.CONTAINER_STARTED_EVENT,
    api_pb2.CONTAINER_STOPPED_EVENT,
    api_pb2.CONTAINER_DELETED_EVENT,
)


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    return cri_factory(registry.daemon_overrides())


def wait_for_streams(cri: Any, count: int, timeout: float = 20.0) -> None:
    """The daemon logs each stream it opens: wait until `count` are open."""
    deadline = time.monotonic() + timeout
    while cri.log_text().count('msg="event stream opened"') < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} event streams did not open:\n{cri.log_text()[-2000:]}")
        time.sleep(0.05)


class EventReader:
    """A GetContainerEvents stream read on a thread into a list."""

    def __init__(self, cri: Any) -> None:
        self.events: list[api_pb2.ContainerEventResponse] = []
        self.error: grpc.RpcError | None = None
        self._call = cri.runtime.GetContainerEvents(api_pb2.GetEventsRequest())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._call:
                self.events.append(event)
        except grpc.RpcError as exc:
            self.error = exc

    def wait(self, predicate: Any, timeout: float = 30.0) -> list[api_pb2.ContainerEventResponse]:
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            if time.monotonic() > deadline:
                got = [(e.container_id[:12], e.container_event_type) for e in self.events]
                raise AssertionError(f"events did not arrive: {got} (error {self.error})")
            time.sleep(0.02)
        return list(self.events)

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(10)


def test_crictl_events_print_a_pod_lifecycle_in_order(
    cri: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    pull(cri, registry.busybox)
    pcfg = pod_config()
    pod_json = tmp_path / "pod.json"
    pod_json.write_text(
        json.dumps(
            {
                "metadata": {"name": pcfg.metadata.name, "namespace": "e2e", "uid": pcfg.metadata.uid},
                "hostname": pcfg.hostname,
                "log_directory": str(tmp_path / "logs"),
                "linux": {},
            }
        )
    )
    ctr_json = tmp_path / "ctr.json"
    ctr_json.write_text(
        json.dumps(
            {
                "metadata": {"name": "app"},
                "image": {"image": registry.busybox},
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
                "log_path": "app.log",
                "linux": {},
            }
        )
    )
    out = tmp_path / "events.json"
    endpoint = f"unix://{cri.socket}"
    with open(out, "w") as sink:
        watcher = subprocess.Popen(
            [str(crictl_binary()), "--runtime-endpoint", endpoint, "events", "--output", "json"],
            stdout=sink,
            stderr=subprocess.PIPE,
        )
    try:
        wait_for_streams(cri, 1)
        pod = crictl(cri, "runp", str(pod_json)).strip()
        cid = crictl(cri, "create", pod, str(ctr_json), str(pod_json)).strip()
        crictl(cri, "start", cid)
        crictl(cri, "stop", cid)
        crictl(cri, "rm", cid)
        crictl(cri, "stopp", pod)
        crictl(cri, "rmp", pod)
        want = [
            (pod, "CONTAINER_CREATED_EVENT"),
            (pod, "CONTAINER_STARTED_EVENT"),
            (cid, "CONTAINER_CREATED_EVENT"),
            (cid, "CONTAINER_STARTED_EVENT"),
            (cid, "CONTAINER_STOPPED_EVENT"),
            (cid, "CONTAINER_DELETED_EVENT"),
            (pod, "CONTAINER_STOPPED_EVENT"),
            (pod, "CONTAINER_DELETED_EVENT"),
        ]
        deadline = time.monotonic() + 20
        while True:
            events = json_objects(out.read_text())
            # protojson leaves the zero enum value (CREATED) out
            got = [(e["containerId"], e.get("containerEventType", "CONTAINER_CREATED_EVENT")) for e in events]
            if len(got) >= len(want) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(10)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()
    assert got == want, f"crictl events printed {got}"
    by_step = dict(zip(want, events, strict=True))
    for key, event in by_step.items():
        assert event["podSandboxStatus"]["metadata"]["name"] == pcfg.metadata.name, key
        assert int(event["createdAt"]) > 0
    assert (
        by_step[(pod, "CONTAINER_STARTED_EVENT")]["podSandboxStatus"].get("state", "SANDBOX_READY")
        == "SANDBOX_READY"
    )
    assert by_step[(pod, "CONTAINER_STOPPED_EVENT")]["podSandboxStatus"]["state"] == "SANDBOX_NOTREADY"
    # a container's removal leaves the pod ready
    assert by_step[(cid, "CONTAINER_DELETED_EVENT")]["podSandboxStatus"].get("state", "SANDBOX_READY") == (
        "SANDBOX_READY"
    )
    states = {
        key: [(s["id"], s.get("state", "CONTAINER_CREATED")) for s in e.get("containersStatuses", [])]
        for key, e in by_step.items()
    }
    assert states[(cid, "CONTAINER_CREATED_EVENT")] == [(cid, "CONTAINER_CREATED")]
    assert states[(cid, "CONTAINER_STARTED_EVENT")] == [(cid, "CONTAINER_RUNNING")]
    assert states[(cid, "CONTAINER_STOPPED_EVENT")] == [(cid, "CONTAINER_EXITED")]
    assert states[(cid, "CONTAINER_DELETED_EVENT")] == []
    stamps = [int(e["createdAt"]) for e in events]
    assert stamps == sorted(stamps)


def test_every_subscriber_gets_each_event_with_the_statuses_of_its_moment(
    cri: Any, registry: TestRegistry
) -> None:
    pull(cri, registry.busybox)
    readers = [EventReader(cri), EventReader(cri)]
    try:
        wait_for_streams(cri, 2)
        pcfg = pod_config()
        pod_id = run_pod(cri, pcfg)
        first = create_container(
            cri, pod_id, pcfg, container_config(registry.busybox, ["sleep", "60"], name="a")
        )
        start(cri, first)  # at once: the CREATED event must still say CREATED
        second = create_container(cri, pod_id, pcfg, container_config(registry.busybox, ["true"], name="b"))
        start(cri, second)
        wait_state(cri, second, api_pb2.CONTAINER_EXITED)
        wanted = [
            (pod_id, CREATED), (pod_id, STARTED), (first, CREATED), (first, STARTED),
            (second, CREATED), (second, STARTED), (second, STOPPED),
        ]  # fmt: skip
        seen = [r.wait(lambda ev: len(ev) >= len(wanted)) for r in readers]
        # PodSandboxStatus carries the same container statuses (kubelet's evented PLEG reads them)
        sandbox = cri.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
        )
        assert sandbox.timestamp > 0
        # newest first: kubelet takes the first status of a name as its latest attempt
        assert [(s.id, s.state) for s in sandbox.containers_statuses] == [
            (second, api_pb2.CONTAINER_EXITED),
            (first, api_pb2.CONTAINER_RUNNING),
        ]
    finally:
        for r in readers:
            r.close()
    for events in seen:
        assert [(e.container_id, e.container_event_type) for e in events] == wanted
    a, b = seen
    assert [e.SerializeToString() for e in a] == [e.SerializeToString() for e in b], "subscribers differ"
    created_first = a[2]
    assert [(s.id, s.state) for s in created_first.containers_statuses] == [
        (first, api_pb2.CONTAINER_CREATED)
    ]
    stopped_second = a[6]
    assert dict((s.id, s.state) for s in stopped_second.containers_statuses) == {
        first: api_pb2.CONTAINER_RUNNING,
        second: api_pb2.CONTAINER_EXITED,
    }
    assert stopped_second.containers_statuses[0].exit_code == 0  # newest first
    assert all(e.pod_sandbox_status.metadata.uid == pcfg.metadata.uid for e in a)


def test_an_exit_while_the_daemon_was_down_is_an_event_after_recovery(
    cri: Any, registry: TestRegistry
) -> None:
    pull(cri, registry.busybox)
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    cid = create_container(
        cri, pod_id, pcfg, container_config(registry.busybox, ["sh", "-c", "sleep 2; exit 7"])
    )
    start(cri, cid)
    cri.stop()
    time.sleep(3)  # the container exits meanwhile
    cri.start()
    reader = EventReader(cri)
    try:
        events = reader.wait(lambda ev: any(e.container_id == cid for e in ev))
    finally:
        reader.close()
    stopped = [e for e in events if e.container_id == cid]
    assert [e.container_event_type for e in stopped] == [STOPPED]
    status = {s.id: s for s in stopped[0].containers_statuses}[cid]
    assert status.state == api_pb2.CONTAINER_EXITED and status.exit_code == 7
    assert stopped[0].pod_sandbox_status.id == pod_id
