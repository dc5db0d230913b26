"""The CRI's rules for a pod's user namespace (NamespaceOption.userns_options)."""

from __future__ import annotations

import pytest

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.pod import userns
from cri_py.pod.pinner import IdMapping, UserNamespace


def _options(
    mode: int | None, uids: list[tuple[int, int, int]], gids: list[tuple[int, int, int]] | None = None
):  # type: ignore[no-untyped-def]
    opts = api_pb2.NamespaceOption()
    if mode is None:
        return opts
    u = opts.userns_options
    u.mode = mode  # type: ignore[assignment]
    for c, h, n in uids:
        u.uids.add(container_id=c, host_id=h, length=n)
    for c, h, n in uids if gids is None else gids:
        u.gids.add(container_id=c, host_id=h, length=n)
    return opts


def test_node_or_nothing_is_the_hosts() -> None:
    assert userns.requested(_options(None, [])) is None
    assert userns.requested(_options(api_pb2.NODE, [])) is None


def test_pod_mode_with_one_mapping_each() -> None:
    ns = userns.requested(_options(api_pb2.POD, [(0, 100000, 65536)], [(0, 200000, 65536)]))
    assert ns == UserNamespace((IdMapping(0, 100000, 65536),), (IdMapping(0, 200000, 65536),))
    assert userns.host_root(ns) == (100000, 200000)
    assert userns.oci_mappings(ns) == {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
    }


@pytest.mark.parametrize(
    ("mode", "uids", "gids"),
    [
        (api_pb2.CONTAINER, [], []),
        (api_pb2.TARGET, [], []),
        (api_pb2.NODE, [(0, 1000, 10)], None),
        (api_pb2.POD, [], []),
        (api_pb2.POD, [(0, 1000, 100000), (0, 2000, 100000)], None),
        (api_pb2.POD, [(1, 1000, 100000)], None),
        (api_pb2.POD, [(0, 1000, 0)], None),
        (api_pb2.POD, [(0, (1 << 32) - 10, 100)], None),
        (api_pb2.POD, [(0, 1000, 10)], []),
    ],
)
def test_refused(
    mode: int, uids: list[tuple[int, int, int]], gids: list[tuple[int, int, int]] | None
) -> None:
    with pytest.raises(InvalidArgument):
        userns.requested(_options(mode, uids, gids))


def test_volume_mappings_must_be_the_pods() -> None:
    ns = UserNamespace((IdMapping(0, 100000, 65536),), (IdMapping(0, 100000, 65536),))
    mount = api_pb2.Mount(
        uidMappings=[api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)],
        gidMappings=[api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)],
    )
    assert userns.same_mapping(mount, ns)
    mount.gidMappings[0].host_id = 5
    assert not userns.same_mapping(mount, ns)


def test_mount_mappings_need_the_pods_user_namespace() -> None:
    ns = UserNamespace((IdMapping(0, 100000, 65536),), (IdMapping(0, 100000, 65536),))
    plain = api_pb2.Mount(container_path="/plain", host_path="/srv")
    mapped = api_pb2.Mount(
        container_path="/mapped",
        host_path="/srv",
        uidMappings=[api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)],
        gidMappings=[api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)],
    )
    userns.check_mounts([plain, mapped], ns)
    userns.check_mounts([plain], None)
    # mappings in a pod that has the host's user namespace: nothing could honour them
    with pytest.raises(InvalidArgument, match="/mapped: id mappings need a pod with a user namespace"):
        userns.check_mounts([plain, mapped], None)
    # other mappings than the pod's, on a bind or an image volume alike
    other = api_pb2.Mount()
    other.CopyFrom(mapped)
    other.uidMappings[0].host_id = 200000
    with pytest.raises(InvalidArgument, match="differ from the pod's"):
        userns.check_mounts([other], ns)
    image = api_pb2.Mount(container_path="/image", image=api_pb2.ImageSpec(image="busybox"))
    image.gidMappings.add(container_id=0, host_id=7, length=1)
    with pytest.raises(InvalidArgument, match="/image: its id mappings differ"):
        userns.check_mounts([image], ns)
