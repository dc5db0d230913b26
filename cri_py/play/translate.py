"""Pod -> PodSandboxConfig and Container -> ContainerConfig, field by field as kubelet builds them.

Everything here is pure: the caller supplies what kubelet would know at that moment (node facts,
the pod's IPs, the image's user, the restart count) and gets the exact CRI messages back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.play import dns, resources, security
from cri_py.play.env import PodRuntime, command_and_args, container_env, expand, mapping_for
from cri_py.play.manifest import iter_containers
from cri_py.play.node import NodeInfo

POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"
DELETION_GRACE_PERIOD = "io.kubernetes.pod.deletionGracePeriod"
TERMINATION_GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
PRESTOP_HANDLER = "io.kubernetes.container.preStopHandler"
CONTAINER_PORTS = "io.kubernetes.container.ports"
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_SEEN = "kubernetes.io/config.seen"
EMPTY_DIR_PLUGIN = "kubernetes.io~empty-dir"
DOWNWARD_API_PLUGIN = "kubernetes.io~downward-api"
PROTOCOLS = {"TCP": api_pb2.Protocol.TCP, "UDP": api_pb2.Protocol.UDP, "SCTP": api_pb2.Protocol.SCTP}
PROPAGATION = {
    None: api_pb2.MountPropagation.PROPAGATION_PRIVATE,
    "None": api_pb2.MountPropagation.PROPAGATION_PRIVATE,
    "HostToContainer": api_pb2.MountPropagation.PROPAGATION_HOST_TO_CONTAINER,
    "Bidirectional": api_pb2.MountPropagation.PROPAGATION_BIDIRECTIONAL,
}


@dataclass(frozen=True)
class PlayContext:
    """kubelet's settings for this run."""

    node: NodeInfo
    root_dir: str  # kubelet's --root-dir: pods/<uid>/volumes, pods/<uid>/containers, seccomp/
    pod_logs_dir: str = "/var/log/pods"
    cgroup_driver: str = "cgroupfs"  # what the runtime's RuntimeConfig reports
    seen: str = ""  # kubernetes.io/config.seen, RFC 3339 UTC
    cgroup_root: str = "/sys/fs/cgroup"  # where play makes (and removes) the pod cgroups


def pod_dir(ctx: PlayContext, pod: Any) -> str:
    return os.path.join(ctx.root_dir, "pods", pod.metadata.uid)


def pod_log_dir(ctx: PlayContext, pod: Any) -> str:
    meta = pod.metadata
    return os.path.join(ctx.pod_logs_dir, f"{meta.namespace}_{meta.name}_{meta.uid}")


def empty_dir_path(ctx: PlayContext, pod: Any, volume_name: str) -> str:
    return os.path.join(pod_dir(ctx, pod), "volumes", EMPTY_DIR_PLUGIN, volume_name)


def downward_api_path(ctx: PlayContext, pod: Any, volume_name: str) -> str:
    return os.path.join(pod_dir(ctx, pod), "volumes", DOWNWARD_API_PLUGIN, volume_name)


def pod_labels(pod: Any) -> dict[str, str]:
    meta = pod.metadata
    labels = dict(meta.labels or {})
    labels.update({POD_NAME_LABEL: meta.name, POD_NAMESPACE_LABEL: meta.namespace, POD_UID_LABEL: meta.uid})
    return labels


def pod_annotations(pod: Any, ctx: PlayContext) -> dict[str, str]:
    """The pod's annotations plus those kubelet's file source gives every static pod."""
    annotations = dict(pod.metadata.annotations or {})
    annotations[CONFIG_SOURCE] = "file"
    annotations[CONFIG_HASH] = pod.metadata.uid
    if ctx.seen:
        annotations[CONFIG_SEEN] = ctx.seen
    return annotations


def cgroup_parent(pod: Any, ctx: PlayContext) -> str:
    """GetPodCgroupParent with cgroups-per-QoS: /kubepods[/<qos>]/pod<uid> or its systemd form."""
    qos = resources.qos_class(pod)
    parts = ["kubepods"] + ([] if qos == "Guaranteed" else [qos.lower()]) + [f"pod{pod.metadata.uid}"]
    if ctx.cgroup_driver != "systemd":
        return "/" + "/".join(parts)
    # systemd: /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice
    escaped = [p.replace("-", "_") for p in parts]
    slices = ["-".join(escaped[: i + 1]) + ".slice" for i in range(len(escaped))]
    return "/" + "/".join(slices)


def port_mappings(pod: Any) -> list[api_pb2.PortMapping]:
    """MakePortMappings over the app containers: every declared port, a named port only once."""
    mappings: list[api_pb2.PortMapping] = []
    for container in pod.spec.containers:
        names: set[str] = set()
        for port in container.ports or []:
            host_ip = port.host_ip or ""
            family = "any" if not host_ip else ("v6" if ":" in host_ip else "v4")
            name = (
                port.name or f"{family}-{port.protocol}-{host_ip}:{port.container_port}:{port.host_port or 0}"
            )
            if name in names:
                continue
            names.add(name)
            mappings.append(
                api_pb2.PortMapping(
                    protocol=PROTOCOLS.get(port.protocol or "TCP", api_pb2.Protocol.TCP),
                    container_port=port.container_port,
                    host_port=port.host_port or 0,
                    host_ip=host_ip,
                )
            )
    return mappings


def runtime_handler(pod: Any) -> str:
    return str(pod.spec.runtime_class_name or "")


def sandbox_config(pod: Any, ctx: PlayContext, attempt: int = 0) -> api_pb2.PodSandboxConfig:
    """generatePodSandboxConfig."""
    meta = pod.metadata
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(
            name=meta.name, uid=meta.uid, namespace=meta.namespace, attempt=attempt
        ),
        log_directory=pod_log_dir(ctx, pod),
        dns_config=dns.pod_dns_config(pod, ctx.node),
        port_mappings=port_mappings(pod),
        labels=pod_labels(pod),
        annotations=pod_annotations(pod, ctx),
    )
    if not pod.spec.host_network:
        config.hostname = dns.kernel_hostname(pod, ctx.node)
    linux = config.linux
    linux.cgroup_parent = cgroup_parent(pod, ctx)
    linux.security_context.CopyFrom(security.sandbox_security_context(pod))
    for sysctl in pod.spec.security_context.sysctls or []:
        linux.sysctls[sysctl.name] = sysctl.value
    linux.resources.CopyFrom(resources.sandbox_resources(pod))
    linux.overhead.CopyFrom(resources.sandbox_overhead(pod))
    return config


def _go_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def container_hash(container: Any) -> str:
    """HashContainer: FNV-1a 32 over the container's JSON (the Go field order is not reproduced)."""
    digest = 0x811C9DC5
    for byte in _go_json(_dump(container)).encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return format(digest, "x")


def ports_json(container: Any) -> str:
    """json.Marshal(container.Ports): Go field order, omitempty."""
    ports = []
    for port in container.ports or []:
        entry: dict[str, Any] = {}
        if port.name:
            entry["name"] = port.name
        if port.host_port:
            entry["hostPort"] = port.host_port
        entry["containerPort"] = port.container_port
        if port.protocol:
            entry["protocol"] = port.protocol
        if port.host_ip:
            entry["hostIP"] = port.host_ip
        ports.append(entry)
    return _go_json(ports)


def container_labels(pod: Any, container: Any) -> dict[str, str]:
    meta = pod.metadata
    return {
        POD_NAME_LABEL: meta.name,
        POD_NAMESPACE_LABEL: meta.namespace,
        POD_UID_LABEL: meta.uid,
        CONTAINER_NAME_LABEL: container.name,
    }


def container_annotations(pod: Any, container: Any, restart_count: int) -> dict[str, str]:
    annotations = {
        CONTAINER_HASH: container_hash(container),
        RESTART_COUNT: str(restart_count),
        TERMINATION_MESSAGE_PATH: container.termination_message_path or "",
        TERMINATION_MESSAGE_POLICY: container.termination_message_policy or "",
    }
    if pod.metadata.deletion_grace_period_seconds is not None:
        annotations[DELETION_GRACE_PERIOD] = str(pod.metadata.deletion_grace_period_seconds)
    if pod.spec.termination_grace_period_seconds is not None:
        annotations[TERMINATION_GRACE_PERIOD] = str(pod.spec.termination_grace_period_seconds)
    if container.lifecycle is not None and container.lifecycle.pre_stop is not None:
        annotations[PRESTOP_HANDLER] = _go_json(_dump(container.lifecycle.pre_stop))
    if container.ports:
        annotations[CONTAINER_PORTS] = ports_json(container)
    return annotations


def container_path(pod: Any, container: Any) -> str:
    """The manifest path of a container, for messages: spec.initContainers[1]."""
    for field, alias in (("init_containers", "initContainers"), ("containers", "containers")):
        for i, candidate in enumerate(getattr(pod.spec, field) or []):
            if candidate is container:
                return f"spec.{alias}[{i}]"
    return f"container {container.name!r}"


def volume_host_path(pod: Any, ctx: PlayContext, volume: Any, path: str) -> str:
    if volume.empty_dir is not None:
        return empty_dir_path(ctx, pod, volume.name)
    if volume.host_path is not None:
        return str(volume.host_path.path)
    if volume.downward_api is not None:
        return downward_api_path(ctx, pod, volume.name)
    kinds = sorted(f for f in type(volume).model_fields if f != "name" and getattr(volume, f) is not None)
    raise InvalidArgument(f"{path}: volume type {', '.join(kinds)} is not supported by cri-py play")


def volume_mounts(
    pod: Any, container: Any, ctx: PlayContext, env: dict[str, str]
) -> list[tuple[api_pb2.Mount, str]]:
    """The container's volume mounts (kubelet's makeMounts) with each one's subPath, if any."""
    volumes = {v.name: (i, v) for i, v in enumerate(pod.spec.volumes or [])}
    path = container_path(pod, container)
    mounts: list[tuple[api_pb2.Mount, str]] = []
    privileged = bool(container.security_context and container.security_context.privileged)
    for i, mount in enumerate(container.volume_mounts or []):
        at = f"{path}.volumeMounts[{i}]"
        if mount.name not in volumes:
            raise InvalidArgument(f"{at}.name: Not found: {mount.name!r}")
        if not mount.mount_path:
            raise InvalidArgument(f"{at}.mountPath: Required value")
        index, volume = volumes[mount.name]
        host_path = volume_host_path(pod, ctx, volume, f"spec.volumes[{index}]")
        sub_path = mount.sub_path or ""
        if mount.sub_path_expr:
            sub_path = expand(mount.sub_path_expr, mapping_for(env))
        if sub_path:
            if os.path.isabs(sub_path) or ".." in sub_path.split("/"):
                raise InvalidArgument(f"{at}.subPath: must be a relative path without '..'")
            host_path = os.path.join(host_path, sub_path)
        if mount.mount_propagation not in PROPAGATION:
            raise InvalidArgument(f"{at}.mountPropagation: Unsupported value {mount.mount_propagation!r}")
        if mount.mount_propagation == "Bidirectional" and not privileged:
            raise InvalidArgument(f"{at}.mountPropagation: Bidirectional requires a privileged container")
        recursive = mount.recursive_read_only == "Enabled"
        if recursive and not mount.read_only:
            raise InvalidArgument(f"{at}.recursiveReadOnly: Enabled requires readOnly")
        mounts.append(
            (
                api_pb2.Mount(
                    container_path=mount.mount_path,
                    host_path=host_path,
                    # kubelet mounts downwardAPI volumes read-only whatever the mount says
                    readonly=bool(mount.read_only) or volume.downward_api is not None,
                    propagation=PROPAGATION[mount.mount_propagation],
                    recursive_read_only=recursive,
                ),
                sub_path,
            )
        )
    return mounts


def etc_hosts_path(ctx: PlayContext, pod: Any) -> str:
    return os.path.join(pod_dir(ctx, pod), "etc-hosts")


def wants_etc_hosts(container: Any, pod_ips: tuple[str, ...]) -> bool:
    return bool(pod_ips) and not any(m.mount_path == "/etc/hosts" for m in container.volume_mounts or [])


def etc_hosts_content(pod: Any, ctx: PlayContext, pod_ips: tuple[str, ...]) -> str:
    """The kubelet-managed /etc/hosts (managedHostsFileContent / the host-network variant)."""
    aliases = ""
    if pod.spec.host_aliases:
        aliases = "\n# Entries added by HostAliases.\n" + "".join(
            f"{a.ip}\t{chr(9).join(a.hostnames or [])}\n" for a in pod.spec.host_aliases
        )
    if pod.spec.host_network:
        return "# Kubernetes-managed hosts file (host network).\n" + ctx.node.etc_hosts + aliases
    hostname, domain = dns.hostname_and_domain(pod, ctx.node)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n" + aliases


@dataclass(frozen=True)
class ImageFacts:
    """What ImageStatus says about the pulled image (kubelet's getImageUser)."""

    ref: str  # the image reference the runtime returned from PullImage
    uid: int | None  # None when the image names a user by name
    username: str


def container_config(
    pod: Any,
    container: Any,
    ctx: PlayContext,
    *,
    restart_count: int,
    image: ImageFacts,
    pod_ips: tuple[str, ...],
    termination_log: str | None,
) -> api_pb2.ContainerConfig:
    """generateContainerConfig. `termination_log` is the host file kubelet created for the
    container's terminationMessagePath (None when the container has no path)."""
    path = container_path(pod, container)
    by_name = {c.name: c for _, c in iter_containers(pod)}
    env = container_env(pod, container, by_name, path, ctx.node, PodRuntime(pod_ips=pod_ips))
    security.verify_run_as_non_root(pod, container, image.uid, image.username)
    command, args = command_and_args(container, env)
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=container.name, attempt=restart_count),
        image=api_pb2.ImageSpec(image=image.ref, user_specified_image=container.image),
        command=command,
        args=args,
        working_dir=container.working_dir or "",
        envs=[api_pb2.KeyValue(key=k, value=v) for k, v in env.items()],
        mounts=[m for m, _ in volume_mounts(pod, container, ctx, env)],
        labels=container_labels(pod, container),
        annotations=container_annotations(pod, container, restart_count),
        log_path=f"{container.name}/{restart_count}.log",
        stdin=bool(container.stdin),
        stdin_once=bool(container.stdin_once),
        tty=bool(container.tty),
    )
    if wants_etc_hosts(container, pod_ips):
        config.mounts.append(api_pb2.Mount(container_path="/etc/hosts", host_path=etc_hosts_path(ctx, pod)))
    if termination_log is not None:
        config.mounts.append(
            api_pb2.Mount(container_path=container.termination_message_path, host_path=termination_log)
        )
    linux = config.linux
    linux.resources.CopyFrom(resources.container_resources(pod, container, ctx.node))
    profile_root = os.path.join(ctx.root_dir, "seccomp")
    linux.security_context.CopyFrom(
        security.container_security_context(pod, container, image.uid, image.username, profile_root)
    )
    return config


def termination_log_path(ctx: PlayContext, pod: Any, container: Any, random_id: str) -> str:
    """kubelet's per-instance file behind terminationMessagePath: pods/<uid>/containers/<name>/<id>."""
    return os.path.join(pod_dir(ctx, pod), "containers", container.name, random_id)
