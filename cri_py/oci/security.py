"""Default security settings: capabilities, masked and read-only paths, seccomp profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cri_py.errors import InvalidArgument

# the set containerd and Docker grant an unprivileged container
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def host_capabilities() -> frozenset[str]:
    """The capabilities this process may hand on (its bounding set): asking runc for more
    fails the create ("unable to apply caps"), as for CAP_SYS_RESOURCE on these machines."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError, IndexError):
        return frozenset(ALL_CAPABILITIES)
    return frozenset(cap for bit, cap in enumerate(ALL_CAPABILITIES) if mask & (1 << bit))


def normalize_capability(name: str) -> str:
    name = name.strip().upper()
    return name if name.startswith("CAP_") else f"CAP_{name}"


def capability_set(add: list[str], drop: list[str], privileged: bool) -> list[str]:
    """The default set with CRI's add/drop applied; "ALL" works on either side."""
    if privileged:
        return list(ALL_CAPABILITIES)
    caps = list(DEFAULT_CAPABILITIES)
    adds = [normalize_capability(c) for c in add]
    drops = [normalize_capability(c) for c in drop]
    if "CAP_ALL" in adds:
        caps = list(ALL_CAPABILITIES)
    else:
        caps += [c for c in adds if c not in caps]
    if "CAP_ALL" in drops:
        # explicit adds survive a drop of everything (kubelet: drop ALL, add NET_BIND_SERVICE)
        return [c for c in adds if c != "CAP_ALL"]
    return [c for c in caps if c not in drops]


# Syscalls refused with EPERM, keyed by the capability that makes them legitimate (None =
# refused always). The default action allows everything else: a deny list keeps working as
# kernels add syscalls, and blocks the same kernel-wide or namespace-escaping operations the
# Docker/containerd default profile blocks by omission.
_DENIED: dict[str | None, tuple[str, ...]] = {
    None: (
        "add_key",
        "keyctl",
        "request_key",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "nfsservctl",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
        "_sysctl",
        "sysfs",
        "kexec_file_load",
        "kexec_load",
        "lookup_dcookie",
        "perf_event_open",
        "get_mempolicy",
        "set_mempolicy",
        "mbind",
        "move_pages",
    ),
    "CAP_SYS_ADMIN": (
        "mount",
        "umount",
        "umount2",
        "pivot_root",
        "setns",
        "unshare",
        "quotactl",
        "name_to_handle_at",
        "open_by_handle_at",
        "swapon",
        "swapoff",
        "fanotify_init",
        "bpf",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ),
    "CAP_SYS_PTRACE": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
}

_EPERM = 1
_ENOSYS = 38
_ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
# clone flags that create namespaces (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
# NEWNET): refused without CAP_SYS_ADMIN, like Docker's profile
_CLONE_NAMESPACE_FLAGS = 0x7E020000


def default_seccomp_profile(capabilities: list[str]) -> dict[str, Any]:
    names: list[str] = []
    for cap, calls in _DENIED.items():
        if cap is None or cap not in capabilities:
            names += calls
    rules: list[dict[str, Any]] = [{"names": sorted(names), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM}]
    if "CAP_SYS_ADMIN" not in capabilities:
        # clone3's flags sit behind a pointer seccomp cannot inspect: ENOSYS makes libc
        # fall back to clone, whose namespace flags are then refused one by one
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
        for bit in range(32):
            flag = 1 << bit
            if _CLONE_NAMESPACE_FLAGS & flag:
                rules.append(
                    {
                        "names": ["clone"],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": _EPERM,
                        "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
                    }
                )
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": list(_ARCHES), "syscalls": rules}


def load_localhost_profile(path: str) -> dict[str, Any]:
    """A profile file in Docker/OCI seccomp JSON; archMap is flattened to architectures."""
    ref = path.removeprefix("localhost/")
    try:
        data = json.loads(Path(ref).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot load seccomp profile {ref!r}: {exc}") from exc
    if not isinstance(data, dict) or "defaultAction" not in data:
        raise InvalidArgument(f"seccomp profile {ref!r} has no defaultAction")
    profile: dict[str, Any] = {"defaultAction": data["defaultAction"]}
    if "defaultErrnoRet" in data:
        profile["defaultErrnoRet"] = data["defaultErrnoRet"]
    arches: list[str] = list(data.get("architectures") or [])
    for entry in data.get("archMap") or []:
        arches.append(entry["architecture"])
        arches += list(entry.get("subArchitectures") or [])
    if arches:
        profile["architectures"] = arches
    syscalls = []
    for rule in data.get("syscalls") or []:
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        if not names:
            continue
        out: dict[str, Any] = {"names": names, "action": rule["action"]}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                out[key] = rule[key]
        syscalls.append(out)
    profile["syscalls"] = syscalls
    return profile
