"""A pod's user namespace as the CRI asks for it (NamespaceOption.userns_options), checked.

NODE (or no userns_options at all): the host's user namespace. POD: a user namespace of the
pod's own with exactly one uid and one gid mapping, each mapping container id 0 (so the
container has a root); CONTAINER and TARGET are not modes the CRI allows for it. Containers
join their pod's namespace; the image's files and the volumes kubelet marks for it are seen
through idmapped mounts.
"""

from __future__ import annotations

from typing import Any

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.pod.pinner import IdMapping, UserNamespace

ID_LIMIT = 1 << 32  # ids are 32 bits; (uid_t)-1 is no id at all


def requested(options: api_pb2.NamespaceOption) -> UserNamespace | None:
    """The user namespace a pod asks for, or None for the host's; InvalidArgument otherwise."""
    if not options.HasField("userns_options"):
        return None
    userns = options.userns_options
    mode = userns.mode
    if mode == api_pb2.NODE:
        if userns.uids or userns.gids:
            raise InvalidArgument("user namespace mode NODE takes no uid or gid mappings")
        return None
    if mode != api_pb2.POD:
        raise InvalidArgument(
            f"user namespace mode {api_pb2.NamespaceMode.Name(mode)} is not supported (POD or NODE)"
        )
    return UserNamespace(_mapping("uid", userns.uids), _mapping("gid", userns.gids))


def _mapping(kind: str, mappings: Any) -> tuple[IdMapping, ...]:
    if len(mappings) != 1:
        raise InvalidArgument(
            f"user namespace mode POD needs exactly one {kind} mapping, got {len(mappings)}"
        )
    m = mappings[0]
    if m.container_id != 0:
        raise InvalidArgument(f"the {kind} mapping must map container id 0 (it starts at {m.container_id})")
    if m.length == 0:
        raise InvalidArgument(f"the {kind} mapping is empty")
    if m.host_id + m.length >= ID_LIMIT:
        raise InvalidArgument(f"the {kind} mapping runs past the last host id")
    return (IdMapping(container_id=m.container_id, host_id=m.host_id, size=m.length),)


def host_root(userns: UserNamespace) -> tuple[int, int]:
    """The host uid and gid the namespace's root is."""
    return _host_id(userns.uid_mappings, 0), _host_id(userns.gid_mappings, 0)


def _host_id(mappings: tuple[IdMapping, ...], container_id: int) -> int:
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    raise InvalidArgument(f"id {container_id} is not mapped")


def maps(userns: UserNamespace, container_id: int) -> bool:
    """`container_id` is mapped (as a uid and as a gid)."""
    return any(m.container_id <= container_id < m.container_id + m.size for m in userns.uid_mappings) and any(
        m.container_id <= container_id < m.container_id + m.size for m in userns.gid_mappings
    )


def oci_mappings(userns: UserNamespace) -> dict[str, list[dict[str, int]]]:
    """The runtime spec's linux.uidMappings / gidMappings."""

    def convert(mappings: tuple[IdMapping, ...]) -> list[dict[str, int]]:
        return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in mappings]

    return {"uidMappings": convert(userns.uid_mappings), "gidMappings": convert(userns.gid_mappings)}


def check_mounts(mounts: Any, user_ns: UserNamespace | None) -> None:
    """The id mappings of a container's mounts: kubelet gives them only in a pod with a user
    namespace, and only the pod's (an idmapped mount takes its mapping from that namespace).
    Anything else cannot be honoured: InvalidArgument rather than a mount with other owners."""
    for mount in mounts:
        if not (mount.uidMappings or mount.gidMappings):
            continue
        if user_ns is None:
            raise InvalidArgument(
                f"mount {mount.container_path}: id mappings need a pod with a user namespace (mode POD)"
            )
        if not same_mapping(mount, user_ns):
            raise InvalidArgument(
                f"mount {mount.container_path}: its id mappings differ from the pod's user namespace"
            )


def same_mapping(mount: api_pb2.Mount, userns: UserNamespace) -> bool:
    """A mount's own id mappings (kubelet sets them on the volumes it wants idmapped) are the
    pod's: the only ones an idmapped mount can take from the pod's namespace."""

    def convert(mappings: Any) -> tuple[IdMapping, ...]:
        return tuple(IdMapping(m.container_id, m.host_id, m.length) for m in mappings)

    return (
        convert(mount.uidMappings) == userns.uid_mappings
        and convert(mount.gidMappings) == userns.gid_mappings
    )
