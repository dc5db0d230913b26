"""The API server's defaulting (SetDefaults_Pod and friends) for pods that never met an API server.

kubelet translates defaulted pods; static pods get the same defaults from kubelet's decoder.
Only the defaults the translation reads are applied.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from cri_py.play.manifest import iter_containers

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_TERMINATION_GRACE_PERIOD = 30


def default_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged reference, IfNotPresent for other tags and digests."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if probe is None:
        return
    if probe.timeout_seconds is None:
        probe.timeout_seconds = 1
    if probe.period_seconds is None:
        probe.period_seconds = 10
    if probe.success_threshold is None:
        probe.success_threshold = 1
    if probe.failure_threshold is None:
        probe.failure_threshold = 3
    if probe.initial_delay_seconds is None:
        probe.initial_delay_seconds = 0


def _default_container(container: Any, host_network: bool) -> None:
    if container.termination_message_path is None:
        container.termination_message_path = DEFAULT_TERMINATION_MESSAGE_PATH
    if container.termination_message_policy is None:
        container.termination_message_policy = "File"
    if container.image_pull_policy is None:
        container.image_pull_policy = default_pull_policy(container.image)
    for port in container.ports or []:
        if port.protocol is None:
            port.protocol = "TCP"
        if host_network and not port.host_port:
            port.host_port = port.container_port
    if container.resources is None:
        container.resources = k8s.V1ResourceRequirements()
    limits = container.resources.limits or {}
    if limits:
        # a request left out defaults to its limit
        requests = dict(container.resources.requests or {})
        for name, amount in limits.items():
            requests.setdefault(name, amount)
        container.resources.requests = requests
    for env in container.env or []:
        if env.value_from is not None and env.value_from.field_ref is not None:
            if env.value_from.field_ref.api_version is None:
                env.value_from.field_ref.api_version = "v1"
    if container.security_context is not None and container.security_context.proc_mount is None:
        container.security_context.proc_mount = "Default"
    _default_probe(container.liveness_probe)
    _default_probe(container.readiness_probe)
    _default_probe(container.startup_probe)


def apply_defaults(pod: Any) -> None:
    """Default `pod` (a V1Pod) in place, as the API server would on create."""
    spec = pod.spec
    if spec.restart_policy is None:
        spec.restart_policy = "Always"
    if spec.dns_policy is None:
        spec.dns_policy = "ClusterFirst"
    if spec.termination_grace_period_seconds is None:
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD
    if spec.security_context is None:
        spec.security_context = k8s.V1PodSecurityContext()
    if spec.enable_service_links is None:
        spec.enable_service_links = True
    host_network = bool(spec.host_network)
    for _, container in iter_containers(pod):
        _default_container(container, host_network)
    for volume in spec.volumes or []:
        if all(getattr(volume, f) is None for f in type(volume).model_fields if f != "name"):
            # a volume without a source is an emptyDir
            volume.empty_dir = k8s.V1EmptyDirVolumeSource()
        if volume.host_path is not None and volume.host_path.type is None:
            volume.host_path.type = ""
    if pod.metadata.labels is None:
        pod.metadata.labels = {}
    if pod.metadata.annotations is None:
        pod.metadata.annotations = {}
