"""The persisted record of one container: an immutable value (changes go through
`ContainerStore`, which writes a new record in place of the old one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2
from cri_py.container.state import ContainerState
from cri_py.store.codec import decode_message, record_from_dict, record_to_dict


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    pod_id: str
    name: str
    attempt: int
    state: ContainerState
    created_at: int
    runtime_handler: str
    # the ContainerConfig as sent, serialized (labels, annotations, mounts, resources, ...)
    config_b64: str
    image_id: str
    image_ref: str
    image_name: str
    bundle: str
    log_path: str = ""
    cgroups_path: str = ""
    pid: int = 0
    conmon_pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    stop_signal: int = 15
    uid: int = 0
    gid: int = 0
    supplemental_groups: tuple[int, ...] = ()
    # resources as last applied (UpdateContainerResources), serialized LinuxContainerResources
    resources_b64: str = ""
    # the runtime forgot the container (runc delete done)
    deleted: bool = False
    # ids of the images mounted as volumes (Mount.image): in use while the container exists
    image_volumes: tuple[str, ...] = ()

    @property
    def name_key(self) -> str:
        return container_name_key(self.pod_id, self.name, self.attempt)

    def config(self) -> api_pb2.ContainerConfig:
        """The parsed config, cached: the List RPCs read it for every record (do not mutate)."""
        cached = self.__dict__.get("_parsed")
        if cached is not None and cached[0] is self.config_b64:
            return cached[1]  # type: ignore[no-any-return]
        cfg = decode_message(self.config_b64, api_pb2.ContainerConfig())
        self.__dict__["_parsed"] = (self.config_b64, cfg)
        return cfg

    def resources(self) -> api_pb2.LinuxContainerResources:
        return decode_message(self.resources_b64, api_pb2.LinuxContainerResources())

    @property
    def bundle_dir(self) -> Path:
        return Path(self.bundle)

    def to_dict(self) -> dict[str, Any]:
        return record_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerRecord:
        return record_from_dict(cls, data, ContainerState)


def container_name_key(pod_id: str, name: str, attempt: int) -> str:
    return f"{pod_id}_{name}_{attempt}"
