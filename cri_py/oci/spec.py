"""The OCI runtime spec (config.json) for infra and workload containers, built without I/O
except reading the image's user database and the device nodes it names."""

from __future__ import annotations

import os
import signal as signal_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.oci import security
from cri_py.oci.cgroups import CONTAINER_PREFIX, clamp_oom_score_adj, container_cgroups_path, oci_resources
from cri_py.oci.devices import device_entry, host_devices
from cri_py.oci.users import resolve_user
from cri_py.validate.paths import resolve_beneath

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# annotations gVisor (and Kata) read to put a pod's containers into one sandbox
ANNOTATION_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
ANNOTATION_SANDBOX_ID = "io.kubernetes.cri.sandbox-id"


@dataclass(frozen=True)
class PodContext:
    """What a container takes from its pod."""

    id: str
    hostname: str
    cgroup_parent: str
    # namespace files to join; None = the host's
    netns_path: str | None
    ipc_path: str | None
    uts_path: str | None
    # the pod's shared PID namespace (infra process), None when the pod shares none
    pid_path: str | None
    host_pid: bool
    resolv_conf: Path
    hosts: Path
    hostname_file: Path
    shm_path: Path | None
    sysctls: dict[str, str] = field(default_factory=dict)
    privileged: bool = False
    # the pod is one sandbox of its runtime's own kernel: "gvisor" (runsc) or "vm" (a shim v2
    # VM runtime); "" = the pod's namespaces are the host's, shared by its containers
    sandbox: str = ""
    # the pod's user namespace (a pin) and its spec mappings ({"uidMappings": [...], ...});
    # None = the host's
    userns_path: str | None = None
    id_mappings: dict[str, list[dict[str, int]]] | None = None

    @property
    def sandboxed_runtime(self) -> bool:
        return bool(self.sandbox)

    def maps(self, uid: int, gid: int) -> bool:
        """uid and gid exist in the pod's user namespace (any do in the host's)."""
        if self.id_mappings is None:
            return True

        def inside(value: int, mappings: list[dict[str, int]]) -> bool:
            return any(m["containerID"] <= value < m["containerID"] + m["size"] for m in mappings)

        return inside(uid, self.id_mappings["uidMappings"]) and inside(gid, self.id_mappings["gidMappings"])


@dataclass(frozen=True)
class HostFacts:
    cgroup_driver: str
    oom_score_adj_floor: int
    # what the daemon itself holds; more cannot be granted
    capabilities: frozenset[str] = frozenset(security.ALL_CAPABILITIES)
    # a cgroup hugetlb controller the runtime can use
    hugetlb: bool = True
    # containers' cgroups are named <prefix>-<id>: `crio-<id>.scope` where cAdvisor is to
    # know them (cgroups.container_cgroups_path, metrics/inspect_api.py)
    cgroup_prefix: str = CONTAINER_PREFIX


def _mount(dest: str, typ: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": typ, "source": source, "options": options}


def _base_mounts(privileged: bool) -> list[dict[str, Any]]:
    ro = [] if privileged else ["ro"]
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", *ro]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", *ro]),
    ]  # fmt: skip


def _pod_file_mounts(pod: PodContext, readonly: bool) -> list[dict[str, Any]]:
    mode = "ro" if readonly else "rw"
    mounts = [
        _mount("/etc/hosts", "bind", str(pod.hosts), ["rbind", "rprivate", mode]),
        _mount("/etc/resolv.conf", "bind", str(pod.resolv_conf), ["rbind", "rprivate", mode]),
        _mount("/etc/hostname", "bind", str(pod.hostname_file), ["rbind", "rprivate", mode]),
    ]
    if pod.shm_path is not None:
        mounts.append(_mount("/dev/shm", "bind", str(pod.shm_path), ["rbind", "rprivate", "rw"]))
    else:
        mounts.append(_mount("/dev/shm", "bind", "/dev/shm", ["rbind", "rprivate", "rw"]))
    return mounts


def _namespaces(pod: PodContext, pid_ns: dict[str, Any] | None) -> list[dict[str, Any]]:
    ns: list[dict[str, Any]] = [{"type": "mount"}]
    if pod.userns_path is not None:
        # joined first by the runtime: the pod's other namespaces belong to it
        ns.append({"type": "user", "path": pod.userns_path})
    for typ, path in (("network", pod.netns_path), ("ipc", pod.ipc_path), ("uts", pod.uts_path)):
        if path is not None:
            ns.append({"type": typ, "path": path})
    if pid_ns is not None:
        ns.append(pid_ns)
    return ns


_PROPAGATION = {
    api_pb2.PROPAGATION_PRIVATE: "rprivate",
    api_pb2.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    api_pb2.PROPAGATION_BIDIRECTIONAL: "rshared",
}


def create_missing_mount_sources(mounts: list[api_pb2.Mount]) -> list[str]:
    """Make the missing host paths of bind mounts as directories (0755), as containerd, CRI-O and
    Docker do: kubelet passes a hostPath volume without a type through as it is, and its pods
    (the node e2e suite's sample device plugin with /var/run/cdi, for one) rely on it. The
    directories stay when the container goes: they are the host's, not the container's.
    Returns the paths made."""
    made = []
    for m in mounts:
        if m.image.image or not m.host_path or os.path.lexists(m.host_path):
            continue
        os.makedirs(m.host_path, mode=0o755, exist_ok=True)
        made.append(m.host_path)
    return made


def cri_mounts(
    mounts: list[api_pb2.Mount], *, rro_supported: bool, image_sources: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """Bind mounts for the CRI mounts; an image mount's source is its volume (`image_sources`
    by the mount's index) and it is always read-only."""
    out = []
    for index, m in enumerate(mounts):
        image_source = (image_sources or {}).get(index)
        if image_source is not None:
            # a bind mount does not keep the source's flags: the volume's are given again
            opts = ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
            out.append(_mount(m.container_path, "bind", image_source, opts))
            continue
        if not m.container_path or not m.host_path:
            raise InvalidArgument("a mount needs container_path and host_path")
        if not Path(m.host_path).exists():
            raise InvalidArgument(f"mount source {m.host_path!r} does not exist")
        opts = ["rbind", _PROPAGATION.get(m.propagation, "rprivate")]
        if m.recursive_read_only:
            # the CRI: only with readonly and private propagation, else the runtime MUST error
            if not m.readonly:
                raise InvalidArgument("recursive_read_only needs readonly")
            if m.propagation != api_pb2.PROPAGATION_PRIVATE:
                raise InvalidArgument("recursive_read_only needs PROPAGATION_PRIVATE")
            if not rro_supported:
                raise InvalidArgument("recursive read-only mounts are not supported by this runtime")
            opts.append("rro")
        opts.append("ro" if m.readonly else "rw")
        out.append(_mount(m.container_path, "bind", m.host_path, opts))
    return out


def _seccomp(
    profile: api_pb2.SecurityProfile | None, legacy_path: str, caps: list[str]
) -> dict[str, Any] | None:
    if profile is not None:
        if profile.profile_type == api_pb2.SecurityProfile.Unconfined:
            return None
        if profile.profile_type == api_pb2.SecurityProfile.Localhost:
            return security.load_localhost_profile(profile.localhost_ref)
        return security.default_seccomp_profile(caps)
    if legacy_path in ("runtime/default", "docker/default"):
        return security.default_seccomp_profile(caps)
    if legacy_path.startswith("localhost/"):
        return security.load_localhost_profile(legacy_path)
    return None


def resolve_signal(value: int, image_stop_signal: str) -> int:
    """CRI's Signal enum or the image's StopSignal ("SIGQUIT", "3"), default SIGTERM."""
    if value:
        name = api_pb2.Signal.Name(value)
        return _signal_number(name)
    if image_stop_signal:
        return _signal_number(image_stop_signal)
    return int(signal_mod.SIGTERM)


def _signal_number(name: str) -> int:
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    aliases = {"SIGCLD": "SIGCHLD", "SIGPOLL": "SIGIO", "SIGIOT": "SIGABRT"}
    name = aliases.get(name, name)
    if name.startswith("SIGRTMINPLUS"):
        return int(signal_mod.SIGRTMIN) + int(name.removeprefix("SIGRTMINPLUS"))
    if name.startswith("SIGRTMAXMINUS"):
        return int(signal_mod.SIGRTMAX) - int(name.removeprefix("SIGRTMAXMINUS"))
    try:
        return int(signal_mod.Signals[name])
    except KeyError as exc:
        raise InvalidArgument(f"unknown signal {name!r}") from exc


def command_line(config: api_pb2.ContainerConfig, image_cfg: dict[str, Any]) -> list[str]:
    """kubelet's rule: command replaces Entrypoint (and drops Cmd); args replace Cmd."""
    entrypoint = list(image_cfg.get("Entrypoint") or [])
    cmd = list(image_cfg.get("Cmd") or [])
    if config.command:
        argv = list(config.command) + list(config.args)
    else:
        argv = entrypoint + (list(config.args) if config.args else cmd)
    if not argv:
        raise InvalidArgument("no command specified and the image has no entrypoint or cmd")
    return argv


def environment(config: api_pb2.ContainerConfig, image_cfg: dict[str, Any], hostname: str) -> list[str]:
    env: dict[str, str] = {}
    for item in image_cfg.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    for kv in config.envs:
        env[kv.key] = kv.value
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", hostname)
    if config.tty:
        env.setdefault("TERM", "xterm")
    return [f"{k}={v}" for k, v in env.items()]


def container_spec(
    *,
    cid: str,
    config: api_pb2.ContainerConfig,
    image_config: dict[str, Any],
    rootfs: Path,
    pod: PodContext,
    host: HostFacts,
    rro_supported: bool = False,
    target_pid_path: str | None = None,
    image_sources: dict[int, str] | None = None,
) -> dict[str, Any]:
    image_cfg = dict(image_config.get("config") or {})
    linux = config.linux
    sc = linux.security_context
    privileged = sc.privileged
    if privileged and not pod.privileged:
        raise InvalidArgument("a privileged container needs a privileged pod sandbox")
    caps = security.capability_set(
        list(sc.capabilities.add_capabilities), list(sc.capabilities.drop_capabilities), privileged
    )
    caps = [c for c in caps if c in host.capabilities]
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user") and not sc.run_as_username:
        # the CRI: run_as_group only with run_as_user or run_as_username, else the runtime MUST error
        raise InvalidArgument("run_as_group is set without run_as_user or run_as_username")
    user = resolve_user(
        rootfs,
        uid=sc.run_as_user.value if sc.HasField("run_as_user") else None,
        username=sc.run_as_username,
        gid=sc.run_as_group.value if sc.HasField("run_as_group") else None,
        image_user=str(image_cfg.get("User") or ""),
        supplemental=list(sc.supplemental_groups),
        strict=sc.supplemental_groups_policy == api_pb2.Strict,
    )
    if not pod.maps(user.uid, user.gid) or not all(pod.maps(0, g) for g in user.additional_gids):
        raise InvalidArgument(
            f"user {user.uid}:{user.gid} (groups {user.additional_gids}) is not mapped in the pod's user namespace"
        )
    # a non-root user keeps only ambient capabilities; its effective set starts empty
    ambient = [security.normalize_capability(c) for c in sc.capabilities.add_ambient_capabilities]
    effective = caps if user.uid == 0 else [c for c in caps if c in ambient]
    process: dict[str, Any] = {
        "terminal": config.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": command_line(config, image_cfg),
        "env": environment(config, image_cfg, pod.hostname),
        "cwd": config.working_dir or str(image_cfg.get("WorkingDir") or "/"),
        "capabilities": {
            "bounding": caps,
            "effective": effective,
            "permitted": caps if user.uid == 0 else effective,
            "inheritable": ambient,
            "ambient": ambient,
        },
        "noNewPrivileges": sc.no_new_privs,
        "oomScoreAdj": clamp_oom_score_adj(linux.resources.oom_score_adj, host.oom_score_adj_floor),
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = user.additional_gids
    if user.username:
        process["user"]["username"] = user.username

    pid_mode = sc.namespace_options.pid
    if pod.sandbox == "gvisor":
        pid_ns = _sandbox_pid_namespace(pid_mode, pod, cid, target_pid_path)
    else:
        pid_ns = _pid_namespace(pid_mode, pod, target_pid_path)

    mounts = _base_mounts(privileged)
    mounts += _pod_file_mounts(pod, readonly=False)
    user_mounts = cri_mounts(list(config.mounts), rro_supported=rro_supported, image_sources=image_sources)
    if pod.sandbox == "gvisor":
        # runsc refuses `rro` ("unknown mount option") and needs none: its gofer serves a bind
        # mount with what lies beneath it as one file system, so `ro` is recursive there
        for m in user_mounts:
            m["options"] = [o for o in m["options"] if o != "rro"]
    user_dests = {m["destination"] for m in user_mounts}
    mounts = [m for m in mounts if m["destination"] not in user_dests]
    mounts += sorted(user_mounts, key=lambda m: len(Path(m["destination"]).parts))

    resources = oci_resources(linux.resources if linux.HasField("resources") else None, host.hugetlb)
    resources["devices"] = [{"allow": privileged, "access": "rwm"}]
    # a privileged container gets the host's device nodes, then those the request names
    # (not into a VM: its shim would try to pass every host device through, as CRI-O's and
    # containerd's privileged_without_host_devices for Kata avoid)
    devices = host_devices() if privileged and pod.sandbox != "vm" else []
    for dev in config.devices:
        devices = [d for d in devices if d["path"] != (dev.container_path or dev.host_path)]
        devices.append(device_entry(dev.host_path, dev.container_path))
        resources["devices"].append(
            {"allow": True, "type": devices[-1]["type"], "major": devices[-1]["major"],
             "minor": devices[-1]["minor"], "access": dev.permissions or "rwm"}
        )  # fmt: skip

    linux_spec: dict[str, Any] = {
        "namespaces": _namespaces(pod, pid_ns),
        "cgroupsPath": container_cgroups_path(pod.cgroup_parent, cid, host.cgroup_driver, host.cgroup_prefix),
        "resources": resources,
        "sysctl": dict(pod.sysctls),
    }
    if devices:
        linux_spec["devices"] = devices
    if pod.id_mappings is not None:
        linux_spec.update(pod.id_mappings)
    # a shared or slave mount only propagates if the container's root mount does too
    propagations = {m.propagation for m in config.mounts}
    if api_pb2.PROPAGATION_BIDIRECTIONAL in propagations and pod.sandboxed_runtime:
        # its own kernel's mounts cannot reach the host's (runsc refuses an rshared root)
        raise InvalidArgument("a sandboxed runtime cannot propagate mounts to the host (Bidirectional)")
    if api_pb2.PROPAGATION_BIDIRECTIONAL in propagations:
        linux_spec["rootfsPropagation"] = "rshared"
    elif api_pb2.PROPAGATION_HOST_TO_CONTAINER in propagations:
        linux_spec["rootfsPropagation"] = "rslave"
    if not privileged:
        linux_spec["maskedPaths"] = list(sc.masked_paths) or list(security.DEFAULT_MASKED_PATHS)
        linux_spec["readonlyPaths"] = list(sc.readonly_paths) or list(security.DEFAULT_READONLY_PATHS)
        if pod.sandbox == "gvisor":
            mounts += _gvisor_path_mounts(
                rootfs, linux_spec["maskedPaths"], linux_spec["readonlyPaths"], mounts
            )
        seccomp = _seccomp(sc.seccomp if sc.HasField("seccomp") else None, sc.seccomp_profile_path, caps)
        if seccomp is not None:
            linux_spec["seccomp"] = seccomp
    # a sandboxed runtime creates the container inside the pod's sandbox (runsc reads these in
    # runsc/specutils/cri.go, Kata in its oci package); others ignore them
    annotations = dict(config.annotations)
    annotations[ANNOTATION_CONTAINER_TYPE] = "container"
    annotations[ANNOTATION_SANDBOX_ID] = pod.id
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": sc.readonly_rootfs},
        "hostname": pod.hostname if pod.uts_path is not None else "",
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux_spec,
    }


def _gvisor_path_mounts(
    rootfs: Path, masked: list[str], readonly: list[str], mounts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """runsc ignores maskedPaths and readonlyPaths (google/gvisor#9245): in the container's
    own files they become mounts, as runc makes them (a masked file under /dev/null, a masked
    directory under an empty read-only tmpfs, a read-only path bound read-only onto itself).
    /proc and /sys are gVisor's own there, with nothing of the host's to hide; a path that is
    absent, or lies in another mount, is left alone (runc skips the absent ones too)."""
    taken = [m["destination"] for m in mounts]

    def in_rootfs(path: str) -> Path | None:
        if path.split("/")[1:2] in (["proc"], ["sys"]) or any(
            path == d or path.startswith(d.rstrip("/") + "/") or d.startswith(path.rstrip("/") + "/")
            for d in taken
        ):
            return None
        try:
            found = resolve_beneath(rootfs, path, field="path", container_root=True)
        except InvalidArgument:
            return None
        return found if found.exists() else None

    out = []
    for path in masked:
        host = in_rootfs(path)
        if host is not None and host.is_dir():
            out.append(_mount(path, "tmpfs", "tmpfs", ["ro", "nosuid", "nodev", "noexec"]))
        elif host is not None:
            out.append(_mount(path, "bind", "/dev/null", ["rbind", "rprivate", "ro"]))
    for path in readonly:
        host = in_rootfs(path)
        if host is not None:
            out.append(_mount(path, "bind", str(host), ["rbind", "rprivate", "ro"]))
    return out


def _pid_namespace(mode: int, pod: PodContext, target_pid_path: str | None) -> dict[str, Any] | None:
    """The container's PID namespace on the host: the pod's (its infra process's), a
    target container's, a new one, or the host's (None)."""
    if mode == api_pb2.NODE or pod.host_pid:
        return None
    if mode == api_pb2.POD and pod.pid_path:
        return {"type": "pid", "path": pod.pid_path}
    if mode == api_pb2.TARGET:
        if not target_pid_path:
            raise InvalidArgument("pid namespace TARGET needs a running target container")
        return {"type": "pid", "path": target_pid_path}
    return {"type": "pid"}


def sandbox_pid_namespace_name(pod: PodContext, cid: str) -> str:
    """The name a container's own PID namespace has inside a gVisor sandbox. runsc never opens
    it: its loader (runsc/boot/loader.go) puts a container whose spec names the same PID
    namespace path as an earlier one's into that one's namespace, and one without a PID
    namespace into the sandbox's root namespace."""
    return str(pod.hosts.parent / "pid-namespaces" / cid)


def _sandbox_pid_namespace(
    mode: int, pod: PodContext, cid: str, target_pid_path: str | None
) -> dict[str, Any] | None:
    """The container's PID namespace inside the pod's gVisor sandbox: the sandbox's root namespace
    (None), where the infra process is pid 1, when the pod shares one; else a new one named
    after the container, or the target container's."""
    if mode == api_pb2.NODE:
        raise InvalidArgument("a sandboxed runtime cannot share the node's PID namespace")
    if mode == api_pb2.POD:
        return None
    if mode == api_pb2.TARGET:
        if target_pid_path is None:
            raise InvalidArgument("pid namespace TARGET needs a running target container")
        # "" : the target runs in the pod's namespace
        return {"type": "pid", "path": target_pid_path} if target_pid_path else None
    return {"type": "pid", "path": sandbox_pid_namespace_name(pod, cid)}


def infra_spec(
    *,
    pod: PodContext,
    rootfs: Path,
    catatonit: Path,
    host: HostFacts,
    oom_score_adj: int = -998,
) -> dict[str, Any]:
    """The pause process: catatonit in pause mode, holding the pod's PID namespace (and, for
    sandboxed runtimes, the sandbox itself)."""
    caps: list[str] = []
    if pod.sandbox == "gvisor" and "CAP_NET_BIND_SERVICE" in host.capabilities:
        # a gVisor sandbox on the node's network stack (runsc --network=host) binds its
        # containers' sockets itself, with the capabilities runsc gives it from this process's:
        # without this one no container of the pod could listen on a port below 1024
        caps = ["CAP_NET_BIND_SERVICE"]
    mounts = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount("/pause", "bind", str(catatonit), ["rbind", "rprivate", "ro"]),
    ]
    mounts += _pod_file_mounts(pod, readonly=True)
    pid_ns = None if pod.host_pid else {"type": "pid"}
    cid = pod.id
    # nobody-like ids for the pause process, where the pod's user namespace has them
    pause_id = 65535 if pod.maps(65535, 65535) else 0
    linux: dict[str, Any] = {
        "namespaces": _namespaces(pod, pid_ns),
        "cgroupsPath": container_cgroups_path(pod.cgroup_parent, cid, host.cgroup_driver, host.cgroup_prefix),
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "sysctl": dict(pod.sysctls),
        "maskedPaths": list(security.DEFAULT_MASKED_PATHS),
        "readonlyPaths": list(security.DEFAULT_READONLY_PATHS),
    }
    if pod.id_mappings is not None:
        linux.update(pod.id_mappings)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": pause_id, "gid": pause_id},
            "args": ["/pause", "-P"],
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": True,
            "oomScoreAdj": clamp_oom_score_adj(oom_score_adj, host.oom_score_adj_floor),
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": pod.hostname if pod.uts_path is not None else "",
        "mounts": mounts,
        "annotations": {ANNOTATION_CONTAINER_TYPE: "sandbox", ANNOTATION_SANDBOX_ID: pod.id},
        "linux": linux,
    }
