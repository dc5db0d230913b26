"""The persisted record of one pod sandbox: an immutable value (changes go through
`SandboxStore`, which writes a new record in place of the old one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2
from cri_py.pod.state import SandboxState
from cri_py.store.codec import decode_message, record_from_dict, record_to_dict


@dataclass(frozen=True)
class SandboxRecord:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: int
    runtime_handler: str
    # the PodSandboxConfig as sent, serialized (labels, annotations, dns, log dir, ...)
    config_b64: str
    pod_dir: str
    cgroup_parent: str
    hostname: str
    netns_path: str = ""  # "" = host network
    ipc_path: str = ""  # "" = host IPC
    uts_path: str = ""  # "" = host UTS
    shm_path: str = ""  # "" = host /dev/shm
    userns_path: str = ""  # "" = the host's user namespace; its mappings are in the config
    host_pid: bool = False
    # the pause process holds the shared PID namespace (and a gVisor sandbox); 0 = none
    infra_pid: int = 0
    # its start time (clock ticks after boot, /proc/<pid>/stat): a reused pid has another
    infra_start_time: int = 0
    infra: bool = False
    # a pod without an infra process but known to cAdvisor (inspect_socket) has an empty
    # cgroup of its own in its place, for cAdvisor's POD entry (relative to each
    # hierarchy's root; "" = none)
    stats_cgroup: str = ""
    ip: str = ""
    additional_ips: tuple[str, ...] = ()
    network_ready: bool = False

    @property
    def name_key(self) -> str:
        return name_key(self.name, self.namespace, self.uid, self.attempt)

    def config(self) -> api_pb2.PodSandboxConfig:
        """The parsed config, cached: the List RPCs read it for every record (do not mutate)."""
        cached = self.__dict__.get("_parsed")
        if cached is not None and cached[0] is self.config_b64:
            return cached[1]  # type: ignore[no-any-return]
        cfg = decode_message(self.config_b64, api_pb2.PodSandboxConfig())
        self.__dict__["_parsed"] = (self.config_b64, cfg)
        return cfg

    @property
    def dir(self) -> Path:
        return Path(self.pod_dir)

    @property
    def pid_ns_path(self) -> str | None:
        return f"/proc/{self.infra_pid}/ns/pid" if self.infra_pid and not self.host_pid else None

    def to_dict(self) -> dict[str, Any]:
        return record_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxRecord:
        return record_from_dict(cls, data, SandboxState)


def name_key(name: str, namespace: str, uid: str, attempt: int) -> str:
    return f"{name}_{namespace}_{uid}_{attempt}"
