"""Host side of a pod's volumes, as kubelet's volume manager prepares them.

emptyDir lives under <root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name> (medium Memory on a
tmpfs play mounts), hostPath is checked against its `type`, and each container gets the
termination-log file behind its terminationMessagePath. All of this is blocking file work:
call it through asyncio.to_thread.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

from cri_py.errors import FailedPrecondition, InvalidArgument
from cri_py.play import downward, translate
from cri_py.play.quantity import parse_quantity, value
from cri_py.play.resources import container_limits
from cri_py.play.translate import PlayContext

EMPTY_DIR_MODE = 0o777
LOG_DIR_MODE = 0o755
_TYPE_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def check_host_path(volume: Any, where: str) -> None:
    """hostPath `type` semantics: *OrCreate creates what is missing, the others must already exist."""
    path = str(volume.host_path.path or "")
    kind = volume.host_path.type or ""
    if not os.path.isabs(path):
        raise InvalidArgument(f"{where}.hostPath.path: must be an absolute path")
    if kind == "":
        return
    if kind == "DirectoryOrCreate":
        if not os.path.exists(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
        kind = "Directory"
    elif kind == "FileOrCreate":
        if not os.path.exists(path):
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
        kind = "File"
    if kind not in _TYPE_CHECKS:
        raise InvalidArgument(f"{where}.hostPath.type: Unsupported value {kind!r}")
    test, what = _TYPE_CHECKS[kind]
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FailedPrecondition(f"{where}: hostPath type check failed: {path} does not exist") from None
    if not test(mode):
        raise FailedPrecondition(f"{where}: hostPath type check failed: {path} is not {what}")


def memory_volume_size(pod: Any, volume: Any, ctx: PlayContext) -> int:
    """calculateEmptyDirMemorySize: node memory, else the pod's memory limit, else sizeLimit,
    whichever is smallest and positive."""
    size = Fraction(ctx.node.memory_bytes)
    limits = [container_limits(c).get("memory") for c in pod.spec.containers]
    if limits and all(limit is not None and limit > 0 for limit in limits):
        pod_limit = sum((limit for limit in limits if limit is not None), Fraction(0))
        for init in pod.spec.init_containers or []:
            pod_limit = max(pod_limit, container_limits(init).get("memory", Fraction(0)))
        if 0 < pod_limit <= size:
            size = pod_limit
    if volume.empty_dir.size_limit:
        wanted = parse_quantity(volume.empty_dir.size_limit, "emptyDir.sizeLimit")
        if 0 < wanted <= size:
            size = wanted
    return value(size)


def is_mountpoint(path: str) -> bool:
    return os.path.ismount(path)


def setup_pod(pod: Any, ctx: PlayContext) -> None:
    """Make the pod's directories, volumes and log directory (kubelet does this before the sandbox)."""
    pod_dir = translate.pod_dir(ctx, pod)
    os.makedirs(pod_dir, mode=0o750, exist_ok=True)
    for index, volume in enumerate(pod.spec.volumes or []):
        where = f"spec.volumes[{index}]"
        if volume.host_path is not None:
            check_host_path(volume, where)
        elif volume.empty_dir is not None:
            path = translate.empty_dir_path(ctx, pod, volume.name)
            os.makedirs(path, exist_ok=True)
            if volume.empty_dir.medium == "Memory":
                if not is_mountpoint(path):
                    size = memory_volume_size(pod, volume, ctx)
                    subprocess.run(
                        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                        check=True,
                        capture_output=True,
                    )
            elif volume.empty_dir.medium not in (None, ""):
                raise InvalidArgument(
                    f"{where}.emptyDir.medium: Unsupported value {volume.empty_dir.medium!r}"
                )
            os.chmod(path, EMPTY_DIR_MODE)
            fs_group = pod.spec.security_context.fs_group
            if fs_group is not None:
                set_volume_ownership(path, fs_group)
        elif volume.downward_api is not None:
            path = translate.downward_api_path(ctx, pod, volume.name)
            files = downward.payload(pod, volume, where, ctx.node)
            os.makedirs(path, exist_ok=True)
            if not is_mountpoint(path):
                subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True, capture_output=True)
                downward.write_atomic(path, files)
                fs_group = pod.spec.security_context.fs_group
                if fs_group is not None:
                    set_volume_ownership(path, fs_group)
        else:
            translate.volume_host_path(pod, ctx, volume, where)  # raises for unsupported kinds
    log_dir = translate.pod_log_dir(ctx, pod)
    os.makedirs(log_dir, mode=LOG_DIR_MODE, exist_ok=True)


def setup_container(pod: Any, container: Any, ctx: PlayContext, random_id: str) -> str | None:
    """The container's log directory and termination-log file; returns that file's host path."""
    os.makedirs(
        os.path.join(translate.pod_log_dir(ctx, pod), container.name), mode=LOG_DIR_MODE, exist_ok=True
    )
    if not container.termination_message_path:
        return None
    path = translate.termination_log_path(ctx, pod, container, random_id)
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    Path(path).touch()
    os.chmod(path, 0o666)
    return path


def set_volume_ownership(root: str, fs_group: int) -> None:
    """SetVolumeOwnership: everything in the volume to group fsGroup, group-writable, and
    directories setgid so new files inherit the group."""
    for directory, dirs, files in os.walk(root):
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            info = os.lstat(name)
            os.lchown(name, -1, fs_group)
            if stat.S_ISLNK(info.st_mode):
                continue
            mask = 0o660
            if stat.S_ISDIR(info.st_mode):
                mask |= stat.S_ISGID | 0o110
            os.chmod(name, stat.S_IMODE(info.st_mode) | mask)
        dirs.sort()


def make_sub_path(host_path: str) -> None:
    """kubelet creates a missing subPath directory inside the volume."""
    os.makedirs(host_path, mode=0o755, exist_ok=True)


def write_etc_hosts(pod: Any, ctx: PlayContext, pod_ips: tuple[str, ...]) -> None:
    path = translate.etc_hosts_path(ctx, pod)
    Path(path).write_text(translate.etc_hosts_content(pod, ctx, pod_ips))
    os.chmod(path, 0o644)


def _mounts_under(root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def teardown_pod(uid: str, namespace: str, name: str, ctx: PlayContext) -> None:
    """Unmount and remove everything play made on the host for the pod with this UID."""
    pod_dir = os.path.join(ctx.root_dir, "pods", uid)
    if os.path.isdir(pod_dir):
        for point in _mounts_under(pod_dir):
            subprocess.run(["umount", point], check=False, capture_output=True)
        shutil.rmtree(pod_dir, ignore_errors=True)
    shutil.rmtree(os.path.join(ctx.pod_logs_dir, f"{namespace}_{name}_{uid}"), ignore_errors=True)
    _remove_empty(os.path.join(ctx.root_dir, "pods"))


def remove_pod_cgroups(parent: str, cgroup_root: str = "/sys/fs/cgroup") -> None:
    """kubelet removes the pod's cgroup once the pod is gone; the QoS levels go too when empty."""
    if not parent.startswith("/kubepods/"):
        return
    parts = parent.strip("/").split("/")
    try:
        hierarchies = [os.path.join(cgroup_root, h) for h in os.listdir(cgroup_root)]
    except OSError:
        return
    for hierarchy in hierarchies:
        if os.path.islink(hierarchy) or not os.path.isdir(hierarchy):
            continue
        for depth in range(len(parts), 0, -1):
            _remove_empty(os.path.join(hierarchy, *parts[:depth]))


def _remove_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # busy or not empty: someone else's pods still use it
