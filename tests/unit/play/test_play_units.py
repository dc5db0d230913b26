"""The small pieces of play: quantities, $(VAR) expansion, DNS, resources, back-off, tables."""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from pathlib import Path

import pytest
from kubernetes import client as k8s

from cri_py.api import api_pb2
from cri_py.errors import FailedPrecondition, InvalidArgument
from cri_py.play import dns, resources, volumes
from cri_py.play.env import expand, mapping_for
from cri_py.play.quantity import milli_value, parse_quantity, value
from cri_py.play.status import Row, container_state_text, format_table
from cri_py.play.watch import Backoff, should_restart
from tests.unit.play.helpers import CTX, NODE, load_pod


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("100m", Fraction(1, 10)),
        ("1", Fraction(1)),
        ("1.5", Fraction(3, 2)),
        ("64Mi", Fraction(64 * 2**20)),
        ("1G", Fraction(10**9)),
        ("1e3", Fraction(1000)),
        ("250u", Fraction(250, 10**6)),
        (".5Ki", Fraction(512)),
    ],
)
def test_parse_quantity(text: str, amount: Fraction) -> None:
    assert parse_quantity(text) == amount


def test_quantity_rounding_and_errors() -> None:
    assert value(Fraction(3, 2)) == 2 and milli_value(Fraction(1, 10**6)) == 1
    with pytest.raises(InvalidArgument, match="limits.cpu: invalid quantity '1x'"):
        parse_quantity("1x", "limits.cpu")
    with pytest.raises(InvalidArgument):
        parse_quantity("abc")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$(A)-$(B)", "x-y"),
        ("$$(A)", "$(A)"),
        ("$(C)", "$(C)"),
        ("$(A", "$(A"),
        ("a$", "a$"),
        ("$$$(A)", "$x"),
        ("$x$(A)$", "$xx$"),
        ("echo $((1+2))", "echo $((1+2))"),
        ("", ""),
    ],
)
def test_expand_follows_kubernetes_syntax(text: str, want: str) -> None:
    assert expand(text, mapping_for({"A": "x", "B": "y"})) == want


def test_env_values_see_only_earlier_variables() -> None:
    from cri_py.play.env import PodRuntime, container_env

    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
        "    env: [{name: B, value: '$(A)'}, {name: A, value: a}, {name: C, value: '$(A)'}, {name: A, value: z}]\n"
    )
    env = container_env(pod, pod.spec.containers[0], {}, "spec.containers[0]", NODE, PodRuntime(()))
    assert env == {"B": "$(A)", "A": "z", "C": "a"}


def test_resource_field_ref_defaults_to_node_allocatable() -> None:
    from cri_py.play.env import PodRuntime, container_env

    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
        "    env:\n    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n"
        "    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Gi}}}\n"
        "    - {name: REQ, valueFrom: {resourceFieldRef: {resource: requests.cpu}}}\n"
    )
    env = container_env(pod, pod.spec.containers[0], {}, "spec.containers[0]", NODE, PodRuntime(()))
    assert env == {"CPU": "4", "MEM": "8", "REQ": "0"}


def test_parse_resolv_conf() -> None:
    servers, searches, options = dns.parse_resolv_conf(
        "# c\nnameserver 1.1.1.1\nsearch a b.\nsearch c d. .\noptions ndots:2\noptions ndots:4 rotate\n"
    )
    assert servers == ["1.1.1.1"] and searches == ["c", "d"] and options == ["ndots:4", "rotate"]


def test_dns_policies() -> None:
    base = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec:\n  containers: [{name: c, image: i}]\n"
    none = dns.pod_dns_config(
        load_pod(base + "  dnsPolicy: None\n  dnsConfig: {nameservers: [9.9.9.9]}\n"), NODE
    )
    assert (list(none.servers), list(none.searches), list(none.options)) == (["9.9.9.9"], [], [])
    cluster_node = dataclasses.replace(NODE, cluster_dns=("10.96.0.10",))
    cluster = dns.pod_dns_config(load_pod(base), cluster_node)
    assert list(cluster.servers) == ["10.96.0.10"]
    assert list(cluster.searches) == [
        "ns.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "example.org",
        "corp.example.org",
    ]
    assert list(cluster.options) == ["ndots:5"]
    no_resolv = dns.pod_dns_config(load_pod(base), dataclasses.replace(NODE, resolv_conf=None))
    assert (list(no_resolv.servers), list(no_resolv.searches)) == (["127.0.0.1"], ["."])
    many = "  dnsConfig: {nameservers: [1.0.0.1, 1.0.0.2]}\n"
    assert len(dns.pod_dns_config(load_pod(base + many), NODE).servers) == 3


def test_hostname_truncation_and_fqdn() -> None:
    long_name = "a" * 62 + "-b"
    pod = load_pod(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {long_name}}}\nspec:\n  containers: [{{name: c, image: i}}]\n"
    )
    assert dns.hostname_and_domain(pod, NODE) == ("a" * 62, "")
    fqdn = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  subdomain: s\n  setHostnameAsFQDN: true\n"
        "  containers: [{name: c, image: i}]\n"
    )
    assert dns.kernel_hostname(fqdn, NODE) == "p.s.default.svc.cluster.local"


def test_shares_and_quota() -> None:
    assert [resources.milli_cpu_to_shares(m) for m in (0, 1, 100, 1000, 300000)] == [2, 2, 102, 1024, 262144]
    assert [resources.milli_cpu_to_quota(m, 100000) for m in (0, 5, 250)] == [0, 1000, 25000]


def test_pod_totals_take_the_max_of_init_containers() -> None:
    pod = load_pod(
        """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - {name: i, image: x, resources: {limits: {cpu: "3", memory: 1Gi}}}
  containers:
  - {name: a, image: x, resources: {limits: {cpu: "1", memory: 256Mi}}}
  - {name: b, image: x, resources: {limits: {cpu: 500m}, requests: {memory: 64Mi}}}
"""
    )
    requests, limits = resources.pod_totals(pod)
    assert limits == {"cpu": Fraction(3), "memory": Fraction(2**30)}
    assert requests == {"cpu": Fraction(3), "memory": Fraction(2**30)}
    assert resources.qos_class(pod) == "Burstable"
    sandbox = resources.sandbox_resources(pod)
    assert (sandbox.cpu_shares, sandbox.cpu_quota, sandbox.memory_limit_in_bytes) == (3072, 300000, 2**30)


def test_hugepage_limits_from_resources() -> None:
    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
        "    resources: {limits: {hugepages-2Mi: 4Mi, memory: 8Mi}}\n"
    )
    limits = resources.hugepage_limits(pod.spec.containers[0], NODE)
    assert limits == [
        api_pb2.HugepageLimit(page_size="2MB", limit=4 * 2**20),
        api_pb2.HugepageLimit(page_size="1GB"),
    ]
    assert (
        resources.hugepage_limits(pod.spec.containers[0], dataclasses.replace(NODE, hugepage_sizes=())) == []
    )


def test_backoff_doubles_from_zero_and_resets() -> None:
    backoff = Backoff(10.0, maximum=40.0)
    assert [backoff.next_delay(1) for _ in range(5)] == [0.0, 10.0, 20.0, 40.0, 40.0]
    assert backoff.next_delay(3600) == 0.0


def test_should_restart() -> None:
    assert should_restart("Always", 0) and should_restart("OnFailure", 1)
    assert not should_restart("OnFailure", 0) and not should_restart("Never", 1)


def test_status_table() -> None:
    status = api_pb2.ContainerStatus(state=api_pb2.CONTAINER_EXITED, exit_code=1, reason="Error")
    assert container_state_text(status) == "Exited(1, Error)"
    assert container_state_text(api_pb2.ContainerStatus(state=api_pb2.CONTAINER_RUNNING)) == "Running"
    table = format_table([Row("default/web", "abc", "Ready", "10.0.0.2", "httpd", "Running", "0")])
    assert table.splitlines() == [
        "POD          SANDBOX  POD STATE  IP        CONTAINER  STATE    RESTARTS  MESSAGE",
        "default/web  abc      Ready      10.0.0.2  httpd      Running  0",
    ]


def _host_path_volume(path: Path, kind: str) -> k8s.V1Volume:
    return k8s.V1Volume(name="v", host_path=k8s.V1HostPathVolumeSource(path=str(path), type=kind))


def test_host_path_type_checks(tmp_path: Path) -> None:
    volumes.check_host_path(_host_path_volume(tmp_path / "new" / "dir", "DirectoryOrCreate"), "v")
    assert (tmp_path / "new" / "dir").is_dir()
    volumes.check_host_path(_host_path_volume(tmp_path / "f", "FileOrCreate"), "v")
    assert (tmp_path / "f").is_file()
    volumes.check_host_path(_host_path_volume(tmp_path / "missing", ""), "v")
    with pytest.raises(FailedPrecondition, match="is not a directory"):
        volumes.check_host_path(_host_path_volume(tmp_path / "f", "Directory"), "v")
    with pytest.raises(FailedPrecondition, match="does not exist"):
        volumes.check_host_path(_host_path_volume(tmp_path / "nope", "File"), "v")
    with pytest.raises(FailedPrecondition, match="is not a socket"):
        volumes.check_host_path(_host_path_volume(tmp_path / "f", "Socket"), "v")
    with pytest.raises(InvalidArgument, match="Unsupported value 'Weird'"):
        volumes.check_host_path(_host_path_volume(tmp_path, "Weird"), "v")


def test_memory_volume_size() -> None:
    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
        "    resources: {limits: {memory: 64Mi}}\n  volumes: [{name: v, emptyDir: {medium: Memory}}]\n"
    )
    volume = pod.spec.volumes[0]
    assert volumes.memory_volume_size(pod, volume, CTX) == 64 * 2**20
    volume.empty_dir.size_limit = "16Mi"
    assert volumes.memory_volume_size(pod, volume, CTX) == 16 * 2**20
    volume.empty_dir.size_limit = "1Gi"  # more than the pod may use
    assert volumes.memory_volume_size(pod, volume, CTX) == 64 * 2**20


def test_setup_and_teardown_pod_directories(tmp_path: Path) -> None:
    ctx = dataclasses.replace(CTX, root_dir=str(tmp_path / "root"), pod_logs_dir=str(tmp_path / "logs"))
    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
        "  volumes: [{name: v, emptyDir: {}}]\n"
    )
    volumes.setup_pod(pod, ctx)
    log_file = volumes.setup_container(pod, pod.spec.containers[0], ctx, "0badcafe")
    uid = pod.metadata.uid
    empty_dir = tmp_path / "root" / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "v"
    assert empty_dir.is_dir() and (os.stat(empty_dir).st_mode & 0o777) == 0o777
    assert log_file == str(tmp_path / "root" / "pods" / uid / "containers" / "c" / "0badcafe")
    assert (os.stat(log_file).st_mode & 0o777) == 0o666
    assert (tmp_path / "logs" / f"default_p_{uid}" / "c").is_dir()
    volumes.teardown_pod(uid, "default", "p", ctx)
    assert not (tmp_path / "root" / "pods").exists() and list((tmp_path / "logs").iterdir()) == []


def test_termination_message_from_file_or_log_tail(tmp_path: Path) -> None:
    from cri_py.play.termination import log_tail, termination_message

    message_file = tmp_path / "msg"
    message_file.write_text("bye")
    log = tmp_path / "0.log"
    log.write_text(
        "2026-01-01T00:00:00.000000000Z stdout F first\n"
        "2026-01-01T00:00:00.000000001Z stderr P part-\n"
        "2026-01-01T00:00:00.000000002Z stderr F one\n"
    )
    assert log_tail(str(log)) == "first\npart-one\n"
    annotations = {
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
        "io.kubernetes.container.terminationMessagePolicy": "FallbackToLogsOnError",
    }
    status = api_pb2.ContainerStatus(
        state=api_pb2.CONTAINER_EXITED,
        exit_code=1,
        annotations=annotations,
        log_path=str(log),
        mounts=[api_pb2.Mount(container_path="/dev/termination-log", host_path=str(message_file))],
    )
    assert termination_message(status) == "bye"
    message_file.write_text("")
    assert termination_message(status) == "first\npart-one\n"
    status.exit_code = 0  # logs only for a failure
    assert termination_message(status) == ""
    status.annotations["io.kubernetes.container.terminationMessagePolicy"] = "File"
    status.exit_code = 1
    assert termination_message(status) == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_fs_group_owns_empty_dirs(tmp_path: Path) -> None:
    ctx = dataclasses.replace(CTX, root_dir=str(tmp_path / "root"), pod_logs_dir=str(tmp_path / "logs"))
    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {fsGroup: 2345}\n"
        "  containers: [{name: c, image: i}]\n  volumes: [{name: v, emptyDir: {}}]\n"
    )
    volumes.setup_pod(pod, ctx)
    path = tmp_path / "root" / "pods" / pod.metadata.uid / "volumes" / "kubernetes.io~empty-dir" / "v"
    info = os.stat(path)
    assert info.st_gid == 2345 and (info.st_mode & 0o7777) == 0o2777
    (path / "f").write_text("x")
    os.chmod(path / "f", 0o600)
    volumes.set_volume_ownership(str(path), 2345)
    assert os.stat(path / "f").st_gid == 2345 and (os.stat(path / "f").st_mode & 0o777) == 0o660


def test_pod_totals_with_sidecars() -> None:
    # KEP-753: sidecars add to the app containers and to every init container started after them
    pod = load_pod(
        """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - {name: side, image: x, restartPolicy: Always, resources: {requests: {cpu: 200m}}}
  - {name: init, image: x, resources: {requests: {cpu: "1"}}}
  containers:
  - {name: a, image: x, resources: {requests: {cpu: 300m}}}
"""
    )
    requests, _ = resources.pod_totals(pod)
    assert requests["cpu"] == Fraction(6, 5)  # max(200m + 300m, 1 + 200m)
