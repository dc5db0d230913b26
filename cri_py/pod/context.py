"""What a container takes from its pod (`PodContext`), derived from the sandbox record."""

from __future__ import annotations

from pathlib import Path

from cri_py.oci.spec import PodContext
from cri_py.pod import userns
from cri_py.pod.model import SandboxRecord


def pod_context(pod: SandboxRecord, sandbox: str) -> PodContext:
    """`sandbox`: the handler type of a runtime whose pod is one sandbox ("gvisor", "vm"), or ""."""
    cfg = pod.config()
    d = pod.dir
    user_ns = userns.requested(cfg.linux.security_context.namespace_options) if pod.userns_path else None
    return PodContext(
        id=pod.id,
        hostname=pod.hostname,
        cgroup_parent=pod.cgroup_parent,
        netns_path=pod.netns_path or None,
        ipc_path=pod.ipc_path or None,
        uts_path=pod.uts_path or None,
        pid_path=pod.pid_ns_path,
        host_pid=pod.host_pid,
        resolv_conf=d / "resolv.conf",
        hosts=d / "hosts",
        hostname_file=d / "hostname",
        shm_path=Path(pod.shm_path) if pod.shm_path else None,
        sysctls=dict(cfg.linux.sysctls),
        privileged=cfg.linux.security_context.privileged,
        sandbox=sandbox,
        userns_path=pod.userns_path or None,
        id_mappings=userns.oci_mappings(user_ns) if user_ns is not None else None,
    )
