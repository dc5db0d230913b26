"""The persisted record of one pod sandbox."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2
from cri_py.pod.state import SandboxState


@dataclass
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
    host_pid: bool = False
    # the pause process holds the shared PID namespace (and a gVisor sandbox); 0 = none
    infra_pid: int = 0
    infra: bool = False
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)
    network_ready: bool = False

    @property
    def name_key(self) -> str:
        return name_key(self.name, self.namespace, self.uid, self.attempt)

    def config(self) -> api_pb2.PodSandboxConfig:
        """The parsed config, cached: the List RPCs read it for every record (do not mutate)."""
        cached = self.__dict__.get("_parsed")
        if cached is not None and cached[0] is self.config_b64:
            return cached[1]  # type: ignore[no-any-return]
        cfg = api_pb2.PodSandboxConfig()
        cfg.ParseFromString(base64.b64decode(self.config_b64))
        self.__dict__["_parsed"] = (self.config_b64, cfg)
        return cfg

    @property
    def dir(self) -> Path:
        return Path(self.pod_dir)

    @property
    def pid_ns_path(self) -> str | None:
        return f"/proc/{self.infra_pid}/ns/pid" if self.infra_pid and not self.host_pid else None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["state"] = SandboxState(values["state"])
        return cls(**values)


def name_key(name: str, namespace: str, uid: str, attempt: int) -> str:
    return f"{name}_{namespace}_{uid}_{attempt}"


def encode_config(config: api_pb2.PodSandboxConfig) -> str:
    return base64.b64encode(config.SerializeToString()).decode()
