"""Request checks: Kubernetes' name rules and limits, what kubelet and critest really send."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.validate import metadata
from cri_py.validate.requests import create_container, run_pod_sandbox

UID = str(uuid.uuid4())


def pod_request(**overrides: Any) -> api_pb2.RunPodSandboxRequest:
    md = {"name": "web-0", "namespace": "default", "uid": UID, "attempt": 0}
    md.update({k: v for k, v in overrides.items() if k in md})
    rest = {k: v for k, v in overrides.items() if k not in md}
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(**md),
        hostname="web-0",
        log_directory=f"/var/log/pods/default_web-0_{UID}",
        dns_config=api_pb2.DNSConfig(
            servers=["10.96.0.10"],
            searches=["default.svc.cluster.local", "svc.cluster.local"],
            options=["ndots:5"],
        ),
        labels={"io.kubernetes.pod.name": "web-0", "app": "web"},
        annotations={"kubernetes.io/config.source": "api"},
        linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"/kubepods/besteffort/pod{UID}"),
    )
    for key, value in rest.items():
        target = config.linux if key == "cgroup_parent" else config
        if isinstance(value, dict):
            getattr(target, key).clear()
            getattr(target, key).update(value)
        elif key == "dns_config":
            config.dns_config.CopyFrom(value)
        else:
            setattr(target, key, value)
    return api_pb2.RunPodSandboxRequest(config=config)


def container_request(**overrides: Any) -> api_pb2.CreateContainerRequest:
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(
            name=overrides.pop("name", "app"), attempt=overrides.pop("attempt", 0)
        ),
        image=api_pb2.ImageSpec(image="busybox"),
        log_path="app/0.log",
        working_dir="/srv",
        mounts=[api_pb2.Mount(container_path="/data", host_path="/var/lib/kubelet/pods/x/volumes/data")],
    )
    for key, value in overrides.items():
        if key == "mounts":
            del config.mounts[:]
            config.mounts.extend(value)
        elif isinstance(value, dict):
            getattr(config, key).update(value)
        else:
            setattr(config, key, value)
    return api_pb2.CreateContainerRequest(pod_sandbox_id="a" * 64, config=config)


def refused(request: Any, field: str) -> None:
    check = run_pod_sandbox if isinstance(request, api_pb2.RunPodSandboxRequest) else create_container
    with pytest.raises(InvalidArgument) as info:
        check(request)
    assert str(info.value).startswith(field), str(info.value)


def test_what_kubelet_sends_passes() -> None:
    run_pod_sandbox(pod_request())
    # the longest pod name Kubernetes allows, a static pod's md5 uid, a high restart count
    run_pod_sandbox(pod_request(name=".".join(["a" * 63] * 3 + ["b" * 61]), uid="0123456789abcdef" * 2))
    run_pod_sandbox(pod_request(namespace="n" * 63, attempt=100_000))
    create_container(container_request(name="c" * 63, attempt=2**31 - 1))
    # annotations exactly at Kubernetes' limit
    at_limit = {"k": "v" * (metadata.TOTAL_ANNOTATIONS_MAX - 1)}
    run_pod_sandbox(pod_request(annotations=at_limit))


def test_what_critest_sends_passes() -> None:
    # cri-tools v1.36 names: capitals, and container names longer than a DNS label
    run_pod_sandbox(
        pod_request(
            name=f"PodSandbox-for-creating-pod-and-container-performance-test-{uuid.uuid4()}",
            namespace=f"cri-test-namespace{uuid.uuid4()}",
            uid=f"cri-test-uid{uuid.uuid4()}",
            log_directory="/tmp/podLogTest123456",
        )
    )
    create_container(
        container_request(name=f"container-with-RunAsGroup-without-RunAsUser-test-{uuid.uuid4()}")
    )


def test_metadata_refusals_name_the_field() -> None:
    refused(pod_request(name="x" * 10_000), "config.metadata.name: must be at most 253")
    refused(pod_request(name="web_0"), "config.metadata.name")
    refused(pod_request(name="-web"), "config.metadata.name")
    refused(pod_request(name="a/b"), "config.metadata.name")
    refused(pod_request(name=""), "config.metadata.name: is required")
    refused(pod_request(namespace="n" * 64), "config.metadata.namespace")
    refused(pod_request(namespace="kube.system"), "config.metadata.namespace")
    refused(pod_request(uid="../x"), "config.metadata.uid")
    refused(pod_request(uid="u" * 254), "config.metadata.uid")
    refused(pod_request(uid=""), "config.metadata.uid")
    refused(pod_request(attempt=2**31), "config.metadata.attempt")
    refused(container_request(name="a.b"), "config.metadata.name")
    refused(container_request(name="c" * 254), "config.metadata.name")
    refused(container_request(attempt=2**32 - 1), "config.metadata.attempt")


def test_size_caps() -> None:
    over = {"k": "v" * metadata.TOTAL_ANNOTATIONS_MAX}
    refused(pod_request(annotations=over), "config.annotations")
    refused(pod_request(labels=over), "config.labels")
    refused(container_request(annotations=over), "config.annotations")
    # counted in bytes, as Kubernetes counts them
    refused(pod_request(annotations={"k": "é" * (metadata.TOTAL_ANNOTATIONS_MAX // 2)}), "config.annotations")


def test_pod_fields_written_to_files_or_paths() -> None:
    refused(pod_request(hostname="web\n10.0.0.1 evil"), "config.hostname")
    refused(pod_request(hostname="h" * 65), "config.hostname")
    refused(pod_request(log_directory="../../tmp"), "config.log_directory")
    refused(pod_request(log_directory="/var/log/pods/../../../etc"), "config.log_directory")
    refused(
        pod_request(dns_config=api_pb2.DNSConfig(servers=["10.0.0.1\nnameserver 6.6.6.6"])),
        "config.dns_config.servers[0]",
    )
    refused(pod_request(dns_config=api_pb2.DNSConfig(searches=["a b"])), "config.dns_config.searches[0]")
    refused(pod_request(cgroup_parent="/kubepods/../.."), "config.linux.cgroup_parent")
    request = pod_request()
    request.config.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.Localhost
    request.config.linux.security_context.seccomp.localhost_ref = "profiles/audit.json"
    refused(request, "config.linux.security_context.seccomp.localhost_ref")


def test_container_fields_that_become_paths() -> None:
    refused(container_request(log_path="../../tmp/x.log"), "config.log_path")
    refused(container_request(log_path="/tmp/x.log"), "config.log_path")
    refused(container_request(working_dir="../.."), "config.working_dir")
    refused(container_request(working_dir="/../../etc"), "config.working_dir")
    refused(
        container_request(mounts=[api_pb2.Mount(container_path="/../../etc", host_path="/srv")]),
        "config.mounts[0].container_path",
    )
    refused(
        container_request(mounts=[api_pb2.Mount(container_path="/x", host_path="srv/data")]),
        "config.mounts[0].host_path",
    )
    refused(
        container_request(mounts=[api_pb2.Mount(container_path="", host_path="/srv")]),
        "config.mounts[0].container_path",
    )
    request = container_request()
    request.config.devices.add(container_path="/../dev/x", host_path="/dev/null")
    refused(request, "config.devices[0].container_path")
    request = container_request()
    request.config.linux.security_context.masked_paths.append("/proc/../../x")
    refused(request, "config.linux.security_context.masked_paths[0]")
    refused(
        api_pb2.CreateContainerRequest(pod_sandbox_id="a", config=api_pb2.ContainerConfig()),
        "config.metadata.name",
    )
    refused(api_pb2.CreateContainerRequest(pod_sandbox_id="a"), "CreateContainer: config is required")
