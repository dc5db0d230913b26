"""ContainerStatus and PodSandboxStatus answers kept serialized with their records: the same
bytes a fresh encoding gives, a new answer once the record changes, and PodSandboxStatus'
concatenated parts parse as one message."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cri_py.api import api_pb2
from cri_py.container.query import ContainerQueries, container_status
from cri_py.container.state import ContainerState
from cri_py.pod.query import sandbox_status
from tests.unit.container.test_stats_service import Env


def test_container_status_bytes_follow_the_record(tmp_path: Path) -> None:
    env = Env(tmp_path)
    queries = ContainerQueries(env.containers)
    rec = env.running[0]
    first = queries.status_response(rec.id)
    assert api_pb2.ContainerStatusResponse.FromString(first).status == container_status(rec)
    assert queries.status_response(rec.id) is first  # kept, not encoded again
    exited = env.containers.transition(rec, ContainerState.EXITED, exit_code=3, finished_at=5)
    after = api_pb2.ContainerStatusResponse.FromString(queries.status_response(rec.id))
    assert after.status.state == api_pb2.CONTAINER_EXITED and after.status.exit_code == 3
    assert after.status == container_status(exited)


def test_pod_status_parts_parse_as_one_answer(tmp_path: Path) -> None:
    env = Env(tmp_path)
    queries = ContainerQueries(env.containers)
    pod_part = asyncio.run(env.stats.pod_queries.status_response(env.pod.id))
    stamp = api_pb2.PodSandboxStatusResponse(timestamp=42).SerializeToString()
    answer = api_pb2.PodSandboxStatusResponse.FromString(
        pod_part + stamp + queries.status_fields_in_pod(env.pod.id)
    )
    assert answer.status == sandbox_status(env.pod, True)
    assert answer.timestamp == 42
    assert list(answer.containers_statuses) == queries.statuses_in_pod(env.pod.id)
    assert len(answer.containers_statuses) == 2
    env.containers.transition(env.running[1], ContainerState.EXITED, exit_code=1, finished_at=5)
    again = api_pb2.PodSandboxStatusResponse.FromString(queries.status_fields_in_pod(env.pod.id))
    states = {s.id: s.state for s in again.containers_statuses}
    assert states[env.running[1].id] == api_pb2.CONTAINER_EXITED
    assert states[env.running[0].id] == api_pb2.CONTAINER_RUNNING
