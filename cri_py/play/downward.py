"""downwardAPI volumes: the pod's metadata and resources as files, written the way kubelet's
AtomicWriter lays them out (a timestamped payload directory, `..data` pointing at it, and a
link per top-level name) on a tmpfs, as kubelet backs these volumes with memory."""

from __future__ import annotations

import datetime
import os
from typing import Any

from cri_py.errors import InvalidArgument
from cri_py.play.env import PodRuntime, field_value, resource_value
from cri_py.play.node import NodeInfo

DEFAULT_MODE = 0o644
# only these fieldRefs are allowed in volumes (status.* may change and is env-only)
VOLUME_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
)


def _check_item_path(path: str, where: str) -> None:
    parts = path.split("/")
    if not path or os.path.isabs(path) or ".." in parts or path.startswith(".."):
        raise InvalidArgument(
            f"{where}.path: must be a relative path without '..' and must not start with '..'"
        )


def payload(pod: Any, volume: Any, where: str, node: NodeInfo) -> dict[str, tuple[str, int]]:
    """path -> (content, mode) for every item of the volume."""
    source = volume.downward_api
    default_mode = source.default_mode if source.default_mode is not None else DEFAULT_MODE
    containers = {c.name: c for c in [*(pod.spec.init_containers or []), *pod.spec.containers]}
    files: dict[str, tuple[str, int]] = {}
    for i, item in enumerate(source.items or []):
        at = f"{where}.downwardAPI.items[{i}]"
        _check_item_path(item.path or "", at)
        if item.field_ref is not None:
            field = item.field_ref.field_path
            if not field.startswith(VOLUME_FIELDS):
                raise InvalidArgument(f"{at}.fieldRef.fieldPath: Unsupported value {field!r} in a volume")
            content = field_value(f"{at}.fieldRef", field, pod, node, PodRuntime(()))
        elif item.resource_field_ref is not None:
            ref = item.resource_field_ref
            if not ref.container_name or ref.container_name not in containers:
                raise InvalidArgument(
                    f"{at}.resourceFieldRef.containerName: must name a container of the pod"
                )
            content = resource_value(f"{at}.resourceFieldRef", ref, containers[ref.container_name], node)
        else:
            raise InvalidArgument(f"{at}: one of fieldRef and resourceFieldRef is required")
        files[item.path] = (content, item.mode if item.mode is not None else default_mode)
    return files


def write_atomic(
    target: str, files: dict[str, tuple[str, int]], now: datetime.datetime | None = None
) -> None:
    """AtomicWriter's layout: target/..<timestamp>/<files>, target/..data -> ..<timestamp>,
    target/<top-level name> -> ..data/<top-level name>."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    payload_dir = os.path.join(target, stamp)
    os.makedirs(payload_dir, mode=0o755)
    for path, (content, mode) in files.items():
        full = os.path.join(payload_dir, path)
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        with open(full, "w") as handle:
            handle.write(content)
        os.chmod(full, mode)
    os.symlink(stamp, os.path.join(target, "..data"))
    for top in sorted({path.split("/", 1)[0] for path in files}):
        os.symlink(os.path.join("..data", top), os.path.join(target, top))
