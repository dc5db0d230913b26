"""Deleting a stopped runc container without starting a runc process.

For a container whose init has exited, `runc delete` removes the container's cgroups (each
hierarchy's directory, deepest first), its state directory (`<root>/<id>`), then runs the
config's poststop hooks; when the container had no PID namespace of its own it first kills
what is left in its cgroup. That is a Go process start (~10 ms on a 2-core machine) after
every container exit, and RemoveContainer right after StopContainer waited for it.

`delete_stopped` does the same for the plain case and answers False, having changed nothing
that runc would not change itself, whenever anything is out of it: not runc's state layout,
a container still created or running, hooks, the systemd cgroup driver, Intel RDT, rootless
cgroups, processes left in the cgroup, or a cgroup the kernel does not let go yet (busy). The
caller then runs the runtime's own delete, which also removes what is left of a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cri_py.oci.exec_fifo import FIFO, STATE
from cri_py.oci.exits import same_process


def delete_stopped(state_dir: Path) -> bool:
    """Remove a stopped runc container's cgroups and state directory; False when runc must."""
    state = _read_state(state_dir)
    if state is None or (state_dir / FIFO).exists():
        return False
    config = state.get("config")
    if not isinstance(config, dict) or not _plain(state, config):
        return False
    if same_process(int(state.get("init_process_pid") or 0), int(state.get("init_process_start") or 0)):
        return False  # still running: runc refuses a delete without --force
    paths = [Path(p) for p in (state.get("cgroup_paths") or {}).values() if p]
    if not _own_pid_namespace(config) and any(_has_processes(p) for p in paths):
        return False  # runc kills them first
    for path in paths:
        if not _remove_tree(path):
            return False
    shutil.rmtree(state_dir, ignore_errors=True)
    return not state_dir.exists()


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((state_dir / STATE).read_bytes())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "cgroup_paths" in state else None


def _plain(state: dict[str, Any], config: dict[str, Any]) -> bool:
    hooks = config.get("Hooks") or {}
    if not isinstance(hooks, dict) or any(hooks.values()):
        return False
    cgroups = config.get("cgroups")
    if not isinstance(cgroups, dict) or cgroups.get("Systemd") or cgroups.get("Rootless"):
        return False
    return not state.get("intel_rdt_path") and not state.get("rootless")


def _own_pid_namespace(config: dict[str, Any]) -> bool:
    return any(
        ns.get("type") == "NEWPID" and not ns.get("path")
        for ns in config.get("namespaces") or []
        if isinstance(ns, dict)
    )


def _has_processes(cgroup: Path) -> bool:
    try:
        return bool((cgroup / "cgroup.procs").read_bytes().strip())
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _remove_tree(cgroup: Path) -> bool:
    """rmdir the cgroup and its children, deepest first; False if one is still busy."""
    if not cgroup.is_dir():
        return True
    for dirpath, _dirs, _files in sorted(os.walk(cgroup), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # busy, or not ours to remove: runc's delete says which
    return not cgroup.exists()
