"""The daemon's own delete of a stopped runc container: cgroups and state directory go, and
everything it does not do as runc would (a live init, hooks, systemd, a busy cgroup, another
layout) is left to `runc delete` untouched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cri_py.oci import exits, runc_delete


def _container(tmp_path: Path, *, pid: int = 0, started: int = 0, **config: Any) -> tuple[Path, list[Path]]:
    """A runc state directory whose cgroup paths are plain directories under tmp_path."""
    cgroups = [tmp_path / "cg" / "memory" / "pod" / "ctr", tmp_path / "cg" / "pids" / "pod" / "ctr"]
    for cg in cgroups:
        cg.mkdir(parents=True)
    state_dir = tmp_path / "root" / "ctr"
    state_dir.mkdir(parents=True)
    cfg: dict[str, Any] = {
        "Hooks": None,
        "cgroups": {"path": "/pod/ctr", "Systemd": False, "Rootless": False},
        "namespaces": [{"type": "NEWPID", "path": ""}, {"type": "NEWNS", "path": ""}],
    }
    cfg.update(config)
    state = {
        "id": "ctr",
        "init_process_pid": pid,
        "init_process_start": started,
        "rootless": False,
        "intel_rdt_path": "",
        "cgroup_paths": {name: str(cg) for name, cg in zip(("memory", "pids"), cgroups, strict=True)},
        "config": cfg,
    }
    (state_dir / "state.json").write_text(json.dumps(state))
    return state_dir, cgroups


def test_a_stopped_container_loses_its_cgroups_and_state_dir(tmp_path: Path) -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    state_dir, cgroups = _container(tmp_path, pid=exited.pid, started=12345)
    assert runc_delete.delete_stopped(state_dir)
    assert not state_dir.exists()
    assert not any(cg.exists() for cg in cgroups)
    assert (tmp_path / "cg" / "memory" / "pod").is_dir()  # the pod's cgroup stays


def test_a_running_init_is_left_to_runc(tmp_path: Path) -> None:
    alive = subprocess.Popen(["sleep", "30"])
    try:
        state_dir, cgroups = _container(tmp_path, pid=alive.pid, started=exits.start_time(alive.pid))
        assert not runc_delete.delete_stopped(state_dir)
        assert (state_dir / "state.json").is_file()
        assert all(cg.is_dir() for cg in cgroups)
    finally:
        alive.kill()
        alive.wait()


def test_a_reused_pid_does_not_count_as_the_init(tmp_path: Path) -> None:
    me = os.getpid()
    state_dir, _ = _container(tmp_path, pid=me, started=exits.start_time(me) - 1)
    assert runc_delete.delete_stopped(state_dir)


@pytest.mark.parametrize(
    "config",
    [
        {"Hooks": {"poststop": [{"path": "/bin/true"}]}},
        {"cgroups": {"path": "/pod/ctr", "Systemd": True}},
        {"cgroups": {"path": "/pod/ctr", "Rootless": True}},
    ],
    ids=["poststop hook", "systemd cgroups", "rootless cgroups"],
)
def test_what_runc_does_more_is_left_to_runc(tmp_path: Path, config: dict[str, Any]) -> None:
    state_dir, cgroups = _container(tmp_path, **config)
    assert not runc_delete.delete_stopped(state_dir)
    assert (state_dir / "state.json").is_file()
    assert all(cg.is_dir() for cg in cgroups)


def test_a_created_container_is_left_to_runc(tmp_path: Path) -> None:
    state_dir, _ = _container(tmp_path)
    os.mkfifo(state_dir / "exec.fifo")
    assert not runc_delete.delete_stopped(state_dir)
    assert (state_dir / "state.json").is_file()


def test_processes_left_in_a_shared_pid_namespace_are_runcs_to_kill(tmp_path: Path) -> None:
    state_dir, cgroups = _container(tmp_path, namespaces=[{"type": "NEWPID", "path": "/proc/1/ns/pid"}])
    (cgroups[0] / "cgroup.procs").write_text("4242\n")
    assert not runc_delete.delete_stopped(state_dir)
    assert (state_dir / "state.json").is_file()


def test_a_busy_cgroup_leaves_the_state_for_runc(tmp_path: Path) -> None:
    state_dir, cgroups = _container(tmp_path)
    (cgroups[1] / "child").mkdir()
    (cgroups[1] / "child" / "busy").write_text("")  # rmdir fails as on a populated cgroup
    assert not runc_delete.delete_stopped(state_dir)
    assert (state_dir / "state.json").is_file()


def test_other_layouts_are_not_touched(tmp_path: Path) -> None:
    state_dir = tmp_path / "root" / "ctr"
    state_dir.mkdir(parents=True)
    (state_dir / "status").write_text("stopped")  # crun's
    assert not runc_delete.delete_stopped(state_dir)
    assert (state_dir / "status").is_file()
    assert not runc_delete.delete_stopped(tmp_path / "absent")
