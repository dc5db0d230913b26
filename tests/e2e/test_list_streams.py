"""The streaming List RPCs answer what their unary twins answer, also past gRPC's 4 MiB default."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2, api_pb2_grpc
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod, start

registry = registry_fixtures.registry

PODS = 24
# 200 kB of annotations per pod and per container: 24 of each are ~4.8 MB, past 4 MiB
BLOB = "x" * 200_000
CLIENT_LIMIT = 4 * 1024 * 1024


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    return cri_factory(registry.daemon_overrides())


def test_streaming_lists_match_their_unary_twins_past_4_mib(cri: Any, registry: TestRegistry) -> None:
    pull(cri, registry.busybox)
    containers = []
    for i in range(PODS):
        pcfg = pod_config()
        pcfg.annotations["blob"] = BLOB
        pcfg.linux.security_context.namespace_options.network = api_pb2.NODE
        pod_id = run_pod(cri, pcfg)
        ccfg = container_config(registry.busybox, ["sleep", "600"], annotations={"blob": BLOB})
        cid = create_container(cri, pod_id, pcfg, ccfg)
        if i % 2 == 0:
            start(cri, cid)
        containers.append(cid)

    # a client with gRPC's default 4 MiB receive limit (kubelet's CRI client has 16 MiB)
    small = grpc.insecure_channel(
        f"unix://{cri.socket}", options=[("grpc.max_receive_message_length", CLIENT_LIMIT)]
    )
    runtime = api_pb2_grpc.RuntimeServiceStub(small)
    try:
        with pytest.raises(grpc.RpcError) as too_big:
            runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=60)
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        def streamed(call: Any, field: str) -> list[list[Any]]:
            return [list(getattr(msg, field)) for msg in call]

        cases = [
            (runtime.StreamPodSandboxes(api_pb2.StreamPodSandboxesRequest(), timeout=60), "pod_sandboxes",
             cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items),
            (runtime.StreamContainers(api_pb2.StreamContainersRequest(), timeout=60), "containers",
             cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=60).containers),
        ]  # fmt: skip
        for call, field, unary in cases:
            batches = streamed(call, field)
            assert len(batches) > 1 and all(batches), field
            flat = [item.SerializeToString() for b in batches for item in b]
            assert flat == [item.SerializeToString() for item in unary], field
        assert {c.id for c in cri.runtime.ListContainers(api_pb2.ListContainersRequest()).containers} == set(
            containers
        )

        # stats: the same set of ids as the unary call (values move between two reads)
        stats = streamed(
            runtime.StreamContainerStats(api_pb2.StreamContainerStatsRequest(), timeout=60), "container_stats"
        )
        unary_stats = cri.runtime.ListContainerStats(api_pb2.ListContainerStatsRequest(), timeout=60).stats
        assert len(stats) > 1
        assert sorted(s.attributes.id for b in stats for s in b) == sorted(
            s.attributes.id for s in unary_stats
        )
        pod_stats = streamed(
            runtime.StreamPodSandboxStats(api_pb2.StreamPodSandboxStatsRequest(), timeout=60),
            "pod_sandbox_stats",
        )
        assert len(pod_stats) > 1
        assert len({s.attributes.id for b in pod_stats for s in b}) == PODS

        # filters as in the unary twins
        one = containers[3]
        flt = api_pb2.ContainerFilter(id=one[:20])
        only = streamed(runtime.StreamContainers(api_pb2.StreamContainersRequest(filter=flt)), "containers")
        assert [[c.id for c in b] for b in only] == [[one]]
        running = api_pb2.ContainerFilter(state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING))
        got = streamed(
            runtime.StreamContainers(api_pb2.StreamContainersRequest(filter=running)), "containers"
        )
        assert sorted(c.id for b in got for c in b) == sorted(containers[::2])
        none = api_pb2.PodSandboxFilter(id="f" * 64)
        assert streamed(runtime.StreamPodSandboxes(api_pb2.StreamPodSandboxesRequest(filter=none)), "x") == []
    finally:
        small.close()
