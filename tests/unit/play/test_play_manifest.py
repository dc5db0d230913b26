"""Manifest loading: kubernetes models, field paths in errors, workloads, static pod UIDs."""

from __future__ import annotations

import pytest

from cri_py.play.defaults import apply_defaults, default_pull_policy
from cri_py.play.manifest import ManifestError, load_documents, static_pod_uid

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: c
    image: busybox
"""


def load(text: str) -> list:
    return [p.pod for p in load_documents(text, "/m.yaml", "node1")]


def error_of(text: str) -> str:
    with pytest.raises(ManifestError) as err:
        load(text)
    return str(err.value)


def test_unknown_field_is_reported_with_its_path() -> None:
    text = POD.replace("image: busybox", "image: busybox\n    imagePullPolicyy: Always")
    assert error_of(text) == "/m.yaml#0: spec.containers[0].imagePullPolicyy: unknown field"


def test_unknown_top_level_and_nested_fields() -> None:
    assert "spex: unknown field" in error_of(POD + "spex: {}\n")
    text = POD.replace("name: web", "name: web\n  lables: {a: b}")
    assert "metadata.lables: unknown field" in error_of(text)


def test_wrong_types_are_reported_with_their_path() -> None:
    text = POD.replace("image: busybox", "image: busybox\n    ports: [{containerPort: '80'}]\n    tty: 'yes'")
    message = error_of(text)
    assert "spec.containers[0].ports[0].containerPort: input should be a valid integer (got str)" in message
    assert "spec.containers[0].tty: input should be a valid boolean (got str)" in message
    text = POD.replace("name: web", "name: web\n  labels: {a: 1}")
    assert "metadata.labels.a: input should be a valid string (got int)" in error_of(text)


def test_int_or_string_errors_name_the_field_once() -> None:
    text = POD.replace("image: busybox", "image: busybox\n    livenessProbe: {tcpSocket: {port: [80]}}")
    message = error_of(text)
    assert message.count("spec.containers[0].livenessProbe.tcpSocket.port:") == 1
    assert "valid integer or" in message


def test_required_fields() -> None:
    assert error_of(POD.replace("  - name: c\n", "  - ")).endswith("spec.containers[0].name: Required value")
    assert error_of(POD.replace("    image: busybox\n", "")).endswith(
        "spec.containers[0].image: Required value"
    )
    assert error_of("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n").endswith(
        "spec.containers: Required value"
    )
    assert "metadata.name: Invalid value 'Web_1'" in error_of(POD.replace("name: web", "name: Web_1"))
    dup = POD + "  - name: c\n    image: busybox\n"
    assert "spec.containers[1].name: Duplicate value 'c'" in error_of(dup)


def test_kind_and_api_version_are_checked() -> None:
    assert "kind: unsupported value 'Service'" in error_of(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
    )
    assert "apiVersion: expected 'v1' for kind Pod" in error_of(
        POD.replace("apiVersion: v1", "apiVersion: v2")
    )
    assert "not valid YAML" in error_of("a: [")
    assert "no documents" in error_of("---\n")


def test_quantities_may_be_yaml_numbers() -> None:
    text = POD.replace("image: busybox", "image: busybox\n    resources: {limits: {cpu: 1, memory: 1.5}}")
    (pod,) = load(text)
    assert pod.spec.containers[0].resources.limits == {"cpu": "1", "memory": "1.5"}


def test_namespace_and_static_pod_uid() -> None:
    (pod,) = load(POD)
    assert pod.metadata.namespace == "default"
    assert len(pod.metadata.uid) == 32 and pod.metadata.uid == load(POD)[0].metadata.uid
    assert pod.metadata.uid != [p.pod for p in load_documents(POD, "/other.yaml", "node1")][0].metadata.uid
    assert static_pod_uid({"a": 1}, "n", "/f") != static_pod_uid({"a": 1}, "m", "/f")
    (given,) = load(POD.replace("name: web", "name: web\n  uid: fixed-uid\n  namespace: apps"))
    assert (given.metadata.uid, given.metadata.namespace) == ("fixed-uid", "apps")


def test_workload_kinds_contribute_their_pod_template() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: front, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec:
      containers: [{name: c, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"""
    front, once = load(text)
    assert (front.metadata.namespace, front.metadata.name, front.metadata.labels) == (
        "shop",
        "front",
        {"app": "front"},
    )
    assert (once.metadata.name, once.spec.restart_policy) == ("once", "Never")
    bad = text.replace("replicas: 3", "replicas: 3\n  strategyy: {}")
    assert "/m.yaml#0: spec.strategyy: unknown field" in error_of(bad)


def test_two_documents_for_one_pod_are_refused() -> None:
    assert "same pod" in error_of(POD + "---\n" + POD)


def test_defaults_follow_the_api_server() -> None:
    text = (
        POD.replace(
            "image: busybox",
            "image: busybox\n    ports: [{containerPort: 80}]\n    resources: {limits: {cpu: 100m}}\n"
            '    livenessProbe: {exec: {command: ["true"]}}',
        )
        + "  volumes: [{name: v}]\n"
    )
    (pod,) = load(text)
    apply_defaults(pod)
    spec, container = pod.spec, pod.spec.containers[0]
    assert (spec.restart_policy, spec.dns_policy, spec.termination_grace_period_seconds) == (
        "Always",
        "ClusterFirst",
        30,
    )
    assert container.image_pull_policy == "Always"
    assert (container.termination_message_path, container.termination_message_policy) == (
        "/dev/termination-log",
        "File",
    )
    assert container.ports[0].protocol == "TCP" and container.ports[0].host_port is None
    assert container.resources.requests == {"cpu": "100m"}
    probe = container.liveness_probe
    assert (
        probe.timeout_seconds,
        probe.period_seconds,
        probe.success_threshold,
        probe.failure_threshold,
    ) == (1, 10, 1, 3)
    assert spec.volumes[0].empty_dir is not None


def test_host_network_defaults_host_ports() -> None:
    text = POD.replace("spec:\n", "spec:\n  hostNetwork: true\n").replace(
        "image: busybox", "image: busybox\n    ports: [{containerPort: 8081}]"
    )
    (pod,) = load(text)
    apply_defaults(pod)
    assert pod.spec.containers[0].ports[0].host_port == 8081


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("localhost:5000/busybox", "Always"),
        ("localhost:5000/busybox:1.36", "IfNotPresent"),
        ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_default_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy


def test_a_list_stands_for_its_items() -> None:
    item = "  - apiVersion: v1\n    kind: Pod\n    metadata: {name: NAME}\n    spec: {containers: [{name: c, image: i}]}\n"
    text = "apiVersion: v1\nkind: List\nitems:\n" + item.replace("NAME", "a") + item.replace("NAME", "b")
    assert [p.metadata.name for p in load(text)] == ["a", "b"]
    bad = text.replace("{name: c, image: i}]}\n  - ", "{name: c, image: i, tyy: true}]}\n  - ", 1)
    assert error_of(bad) == "/m.yaml#0.items[0]: spec.containers[0].tyy: unknown field"
