"""Paths beneath their roots: text checks, and symlinks planted in a log directory or a rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cri_py.errors import InvalidArgument
from cri_py.validate.paths import (
    check_absolute,
    check_beneath,
    check_cgroup_parent,
    climbs_out,
    container_log_path,
    resolve_beneath,
)


def test_climbing_is_counted_per_component() -> None:
    assert climbs_out(["..", "x"])
    assert climbs_out(["a", "..", "..", "b"])
    assert not climbs_out(["a", "..", "b"])
    assert not climbs_out(["", "a", ".", "b", ".."])
    assert not climbs_out(["..."])  # a name, not a step up


@pytest.mark.parametrize("value", ["../../tmp/x.log", "../x.log", "c/../../x.log", "/tmp/x.log", ""])
def test_log_path_text_that_leaves_the_log_directory(value: str) -> None:
    with pytest.raises(InvalidArgument, match=r"config\.log_path"):
        check_beneath("config.log_path", value, absolute=False)


@pytest.mark.parametrize("value", ["c/0.log", "c.log", "a/../b/0.log", "x..log", "./c/1.log"])
def test_log_path_text_kubelet_and_critest_send(value: str) -> None:
    check_beneath("config.log_path", value, absolute=False)


def test_container_paths_are_taken_from_the_container_root() -> None:
    check_beneath("config.mounts[0].container_path", "/data/../etc")
    check_beneath("config.mounts[0].container_path", "data")  # runc takes it from `/`
    with pytest.raises(InvalidArgument, match=r"mounts\[0\]\.container_path.*leads outside"):
        check_beneath("config.mounts[0].container_path", "/../../etc")
    with pytest.raises(InvalidArgument, match="working_dir.*absolute"):
        check_beneath("config.working_dir", "work", absolute=True)
    with pytest.raises(InvalidArgument, match="NUL"):
        check_beneath("config.working_dir", "/a\0b", absolute=True)
    with pytest.raises(InvalidArgument, match="PATH_MAX"):
        check_beneath("config.working_dir", "/" + "a" * 5000, absolute=True)


def test_host_paths_are_absolute_and_plain() -> None:
    check_absolute("config.log_directory", "/var/log/pods/ns_name_uid")
    for bad in ("var/log/pods", "/var/log/../../etc", "/var/log/pods/.."):
        with pytest.raises(InvalidArgument, match="config.log_directory"):
            check_absolute("config.log_directory", bad)
    check_cgroup_parent("config.linux.cgroup_parent", "/kubepods/burstable/pod1234")
    check_cgroup_parent("config.linux.cgroup_parent", "kubepods-burstable-pod1234.slice")
    with pytest.raises(InvalidArgument, match="cgroup_parent"):
        check_cgroup_parent("config.linux.cgroup_parent", "/kubepods/../../../sys")


def test_log_path_resolves_inside(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "real").mkdir(parents=True)
    (logs / "alias").symlink_to("real")  # relative, stays inside
    (logs / "absolute-inside").symlink_to(logs / "real")
    assert container_log_path(str(logs), "c/0.log") == str(logs / "c" / "0.log")
    assert container_log_path(str(logs), "alias/0.log") == str(logs / "real" / "0.log")
    assert container_log_path(str(logs), "absolute-inside/0.log") == str(logs / "real" / "0.log")
    assert container_log_path(str(logs), "") == ""
    # nothing was created by resolving
    assert sorted(p.name for p in logs.iterdir()) == ["absolute-inside", "alias", "real"]


def test_symlinks_planted_in_the_log_directory_are_refused(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    outside = tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    (logs / "up").symlink_to("..")
    (logs / "away").symlink_to(outside)
    (logs / "escape.log").symlink_to(outside / "x.log")
    (logs / "chain").symlink_to("up/outside")
    (logs / "loop").symlink_to("loop")
    for planted in ("up/x.log", "away/x.log", "escape.log", "chain/x.log"):
        with pytest.raises(InvalidArgument, match=r"config\.log_path.*outside"):
            container_log_path(str(logs), planted)
    with pytest.raises(InvalidArgument, match="too many levels"):
        container_log_path(str(logs), "loop/x.log")
    assert list(outside.iterdir()) == []


def test_a_log_directory_behind_a_symlink_is_the_callers_choice(tmp_path: Path) -> None:
    real = tmp_path / "data" / "pods"
    real.mkdir(parents=True)
    (tmp_path / "var-log").symlink_to(tmp_path / "data")
    logs = tmp_path / "var-log" / "pods"
    (real / "c").symlink_to(real / "d")  # absolute, into the root through its real path
    assert container_log_path(str(logs), "c/0.log") == str(logs / "d" / "0.log")


def test_a_file_in_the_middle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgument, match="Not a directory"):
        resolve_beneath(tmp_path, "file/x.log", field="config.log_path")


def test_container_root_keeps_absolute_symlinks_inside(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "etc").mkdir(parents=True)
    (rootfs / "etc").symlink_to("/usr/etc")  # absolute: inside the container it means rootfs/usr/etc
    (rootfs / "up").symlink_to("../../../..")
    got = resolve_beneath(rootfs, "etc/passwd", field="f", container_root=True)
    assert got == rootfs / "usr" / "etc" / "passwd"
    assert resolve_beneath(rootfs, "up/etc/passwd", field="f", container_root=True) == (
        rootfs / "usr" / "etc" / "passwd"
    )
    assert os.path.commonpath([got, rootfs]) == str(rootfs)
