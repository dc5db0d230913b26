"""What kubelet checks before it admits a pod (and what play cannot honour without an API server).

`admit` raises for pods kubelet would reject (unsafe sysctls, host-network pods with network
sysctls, Windows pods); `ignored_fields` lists what has no meaning without a cluster, for a warning.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from cri_py.errors import InvalidArgument
from cri_py.play.manifest import iter_containers

# kubelet's safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
# sysctls that live in the pod's network namespace
NET_PREFIXES = ("net.",)
IPC_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")


def _allowed(name: str, unsafe_allowed: tuple[str, ...]) -> bool:
    return name in SAFE_SYSCTLS or any(fnmatch.fnmatchcase(name, pattern) for pattern in unsafe_allowed)


def admit(pod: Any, unsafe_allowed: tuple[str, ...] = ()) -> None:
    spec = pod.spec
    if spec.os is not None and spec.os.name not in (None, "linux"):
        raise InvalidArgument(f"spec.os.name: Unsupported value {spec.os.name!r}: this node runs linux")
    for i, sysctl in enumerate(spec.security_context.sysctls or []):
        where = f"spec.securityContext.sysctls[{i}]"
        name = sysctl.name.replace("/", ".")
        if not _allowed(name, unsafe_allowed):
            raise InvalidArgument(
                f"{where}: SysctlForbidden: {name} is not a safe sysctl (allow it with --allowed-unsafe-sysctls)"
            )
        if spec.host_network and name.startswith(NET_PREFIXES):
            raise InvalidArgument(f"{where}: {name} is a network sysctl and the pod uses the host network")
        if spec.host_ipc and name.startswith(IPC_SYSCTLS):
            raise InvalidArgument(f"{where}: {name} is an IPC sysctl and the pod uses the host IPC namespace")
    for i, container in enumerate(spec.init_containers or []):
        if container.restart_policy not in (None, "Always"):
            raise InvalidArgument(
                f"spec.initContainers[{i}].restartPolicy: Unsupported value {container.restart_policy!r}: "
                "only Always (a sidecar) is allowed"
            )
    for i, container in enumerate(spec.containers):
        if container.restart_policy is not None or container.restart_policy_rules:
            raise InvalidArgument(
                f"spec.containers[{i}].restartPolicy: per-container restart policies are not supported by "
                "cri-py play"
            )


def ignored_fields(pod: Any) -> list[str]:
    """Fields that need a cluster (API server, scheduler, secrets) and that play ignores."""
    spec = pod.spec
    ignored = [
        name
        for name, present in (
            ("spec.imagePullSecrets", spec.image_pull_secrets),
            ("spec.affinity", spec.affinity),
            ("spec.nodeSelector", spec.node_selector),
            ("spec.tolerations", spec.tolerations),
            ("spec.topologySpreadConstraints", spec.topology_spread_constraints),
            ("spec.readinessGates", spec.readiness_gates),
            ("spec.ephemeralContainers", spec.ephemeral_containers),
            ("spec.activeDeadlineSeconds", spec.active_deadline_seconds),
        )
        if present
    ]
    for _, container in iter_containers(pod):
        for kind in ("liveness_probe", "readiness_probe", "startup_probe"):
            probe = getattr(container, kind)
            if probe is not None and probe.grpc is not None:
                ignored.append(f"{container.name}: grpc {kind.replace('_', ' ')} (it will always fail)")
    return ignored
