"""The node the suite runs on: namespaces of its own on this machine.

- a network namespace `cripy-nconf-<id>` holding only a loopback, a port-less bridge with the
  node's address (10.216.255.1) that also carries the default route (anything not local to the
  node is dropped there: no spec reaches this machine's external address or beyond), and, once the
  first pod starts, the pods' bridge `cripync0` with 10.216.0.0/24;
- a cgroup `cripy-nconf-<id>` in every hierarchy, which the node sees as its cgroup root (a
  cgroup namespace plus bind mounts over /sys/fs/cgroup, as kind nodes do): kubelet's
  cgroupRoot `/`, its /kubelet, /system and the runtime's cgroup all live inside it, and
  kubelet moving "every process of the root cgroup" into /system moves only the node's own;
- a pid namespace whose pid 1 is catatonit: kubelet checks that it runs in the "host" pid
  namespace by reading /proc/1/ns/pid before it moves itself into its cgroup, and this
  machine's own pid 1 cannot be inspected; hostPID pods share the node's pid namespace;
- a mount namespace in which /run, /tmp, /var/lib and /var/log are the node's own (tmpfs, or
  the node's directories bound over them: /var/lib/kubelet, /var/lib/cni and the work
  directory stay on disk), so nothing the node writes lands in the host's directories and
  nothing done there (another test removing an empty /var/lib/kubelet, say) reaches into the
  node; /etc/resolv.conf is the node's own, journalctl is hidden (no journald runs here: the
  suite copies kubelet's log file instead), and kubelet reads the kernel tunables it wants
  (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1) from files of the node
  instead of writing them host-wide. Its mounts are shared among themselves (as systemd makes
  a node's), slaves of the host's: Bidirectional volume mounts work, none reaches the host.

`Node.create()` makes the network namespace and cgroups, `Node.spawn()` starts a process inside
(it calls `enter_view()` there first), `Node.destroy()` kills whatever still runs in the cgroups
and removes every object; mounts die with the mount namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cripy-nconf"
BRIDGE = "cripync0"
NODE_LINK = "cripync-node"
NODE_IP = "10.216.255.1"
POD_SUBNET = "10.216.0.0/24"
CGROUP_MOUNT = Path("/sys/fs/cgroup")
# the node's init: reaps what conmon and kubelet leave to pid 1; when it exits, the kernel
# kills every process left in the node's pid namespace
CATATONIT = "/usr/bin/catatonit"

# what kubelet's container manager sets when it may modify kernel defaults (its
# setupKernelTunables); values already right are left alone
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

# directories of /var/lib kubelet and CNI use at fixed paths, kept on disk in the work directory
VAR_LIB_DIRS = ("kubelet", "cni")
# the host directories the node's view replaces with its own
REPLACED_DIRS = ("/run", "/tmp", "/var/lib", "/var/log")


class NodeError(Exception):
    pass


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def cgroup_hierarchies() -> list[str]:
    """The cgroup mounts under /sys/fs/cgroup by directory name (cpu, memory, unified, ...)."""
    names = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            mountpoint = Path(fields[4])
            if fstype in ("cgroup", "cgroup2") and mountpoint.parent == CGROUP_MOUNT:
                names.append(mountpoint.name)
    return sorted(names)


def _cgroup_tree_pids(root: Path) -> set[int]:
    pids: set[int] = set()
    for dirpath, _dirs, files in os.walk(root):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split())
    return pids


def _remove_cgroup_tree(root: Path) -> None:
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


@dataclass
class Node:
    name: str  # cripy-nconf-<id>: the netns and cgroup name
    workdir: Path
    hierarchies: list[str] = field(default_factory=cgroup_hierarchies)

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.name

    def cgroup(self, hierarchy: str) -> Path:
        return CGROUP_MOUNT / hierarchy / self.name

    # --- outside: create and destroy -------------------------------------------------------

    def create(self) -> None:
        run("ip", "netns", "add", self.name)
        ns = ("ip", "-n", self.name)
        run(*ns, "link", "set", "lo", "up")
        # a bridge without ports stands in for a dummy link (no dummy driver in this kernel):
        # what is routed to it goes nowhere
        run(*ns, "link", "add", NODE_LINK, "type", "bridge")
        run(*ns, "addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK)
        run(*ns, "link", "set", NODE_LINK, "up")
        run(*ns, "route", "add", "default", "dev", NODE_LINK)
        for hierarchy in self.hierarchies:
            path = self.cgroup(hierarchy)
            path.mkdir(exist_ok=True)
            if hierarchy == "cpuset":
                # a v1 cpuset starts empty: give it its parent's cpus and memory nodes
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((path.parent / knob).read_text())
        for directory in VAR_LIB_DIRS:
            (self.workdir / "node" / "var-lib" / directory).mkdir(parents=True, exist_ok=True)
        (self.workdir / "node" / "var-log").mkdir(parents=True, exist_ok=True)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for hierarchy in self.hierarchies:
            if self.cgroup(hierarchy).exists():
                found |= _cgroup_tree_pids(self.cgroup(hierarchy))
        proc = run("ip", "netns", "pids", self.name, check=False)
        found |= {int(p) for p in proc.stdout.split()}
        return found

    def kill_all(self, timeout: float = 20.0) -> None:
        """SIGKILL every process of the node (its cgroups and netns) until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids() - {os.getpid()}
            if not pids:
                return
            freezer = self.cgroup("freezer")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise NodeError(f"processes of {self.name} survive SIGKILL: {sorted(pids)} ({freezer})")
            time.sleep(0.2)

    def destroy(self) -> None:
        """Remove every object of the node; safe to call on a half-made one."""
        errors: list[str] = []
        try:
            self.kill_all()
        except NodeError as err:
            errors.append(str(err))
        for hierarchy in self.hierarchies:
            _remove_cgroup_tree(self.cgroup(hierarchy))
            if self.cgroup(hierarchy).exists():
                errors.append(f"cgroup {self.cgroup(hierarchy)} is still there")
        if self.netns_path.exists():
            proc = run("ip", "netns", "del", self.name, check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns del {self.name}: {proc.stderr.strip()}")
        if errors:
            raise NodeError("; ".join(errors))

    def spawn(self, argv: Sequence[str], **popen: object) -> subprocess.Popen[bytes]:
        """Start argv in the node: its cgroups (as cgroup namespace), netns, a pid namespace
        (catatonit its pid 1, argv its child) and a new mount namespace whose mounts propagate
        from the host but never back."""
        procs_files = [str(self.cgroup(h) / "cgroup.procs") for h in self.hierarchies]

        def join_cgroups() -> None:
            pid = str(os.getpid())
            for path in procs_files:
                with open(path, "w") as procs:
                    procs.write(pid)

        command = [
            "nsenter",
            f"--net={self.netns_path}",
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "--cgroup",
            "--pid",
            "--fork",
            "--mount-proc",
            "--",
            CATATONIT,
            "--",
            *argv,
        ]
        return subprocess.Popen(command, preexec_fn=join_cgroups, **popen)  # type: ignore[call-overload,no-any-return]


OWNER_FILE = "owner.pid"


def claim(workdir: Path) -> None:
    """Mark workdir as this process's node (written before any object of the node exists)."""
    workdir.mkdir(parents=True)
    (workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned(work_root: Path) -> list[Node]:
    """Nodes whose run was killed before it could remove them (SIGKILL, a crash, a reboot):
    a work directory with an owner pid file naming a process that no longer exists. A node
    being made or run right now has a live owner and is never listed."""
    found = []
    for workdir in sorted(work_root.glob(f"{PREFIX}-*")) if work_root.is_dir() else []:
        try:
            owner = int((workdir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            found.append(Node(workdir.name, workdir))
    return found


# --- inside: the node's view of the machine -------------------------------------------------


def _mount(*args: str) -> None:
    run("mount", *args)


def enter_view(workdir: Path, name: str, hierarchies: Sequence[str], keep: Sequence[Path] = ()) -> None:
    """Called first thing inside the node's namespaces (see the module docstring). The host's
    directories in `keep` (the checkout, the binary cache) stay visible where they are, also
    when they lie under a directory the node replaces (a clone in /tmp, say)."""
    kept = _hold_hidden(keep)
    staging = workdir / "node" / "cgroup-staging"
    for hierarchy in hierarchies:
        (staging / hierarchy).mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(CGROUP_MOUNT / hierarchy / name), str(staging / hierarchy))
    # sysfs shows the network devices of the namespace that mounts it
    run("umount", "-l", "/sys")
    _mount("-t", "sysfs", "sysfs", "/sys")
    _mount("-t", "tmpfs", "-o", "mode=755", "cgroup", str(CGROUP_MOUNT))
    for hierarchy in hierarchies:
        target = CGROUP_MOUNT / hierarchy
        target.mkdir()
        _mount("--bind", str(staging / hierarchy), str(target))
        run("umount", str(staging / hierarchy))
    _mount("-t", "tmpfs", "-o", "mode=755", "node-run", "/run")
    Path("/run/lock").mkdir(mode=0o1777)
    _mount("-t", "tmpfs", "-o", "mode=1777", "node-tmp", "/tmp")
    # /var/lib of the node: a tmpfs holding the work directory (under the host's /var/lib,
    # carried over through /tmp) and kubelet's and CNI's directories, bound from it
    carry = Path("/tmp/node-work")
    carry.mkdir()
    _mount("--bind", str(workdir), str(carry))
    _mount("-t", "tmpfs", "-o", "mode=755", "node-var-lib", "/var/lib")
    workdir.mkdir(parents=True)
    _mount("--bind", str(carry), str(workdir))
    run("umount", str(carry))
    carry.rmdir()
    for directory in VAR_LIB_DIRS:
        target = Path("/var/lib") / directory
        target.mkdir()
        _mount("--bind", str(workdir / "node" / "var-lib" / directory), str(target))
    _mount("--bind", str(workdir / "node" / "var-log"), "/var/log")
    resolv = workdir / "node" / "resolv.conf"
    # DNS of the node and of pods with dnsPolicy Default goes to the node's own address
    resolv.write_text(f"nameserver {NODE_IP}\n")
    _mount("--bind", str(resolv), str(Path("/etc/resolv.conf").resolve()))
    # the suite reads logs with journalctl where it finds one; no journald runs here
    journalctl = shutil.which("journalctl")
    if journalctl:
        _mount("--bind", "/dev/null", str(Path(journalctl).resolve()))
    tunables = workdir / "node" / "sysctl"
    tunables.mkdir(exist_ok=True)
    for key, value in KERNEL_TUNABLES.items():
        path = Path("/proc/sys") / key
        if path.read_text().strip() == value:
            continue
        fake = tunables / key.replace("/", ".")
        fake.write_text(value + "\n")
        _mount("--bind", "-o", "ro", str(fake), str(path))
    _put_back(kept)
    # a node's mounts are shared, as systemd makes them: Bidirectional volume mounts need their
    # source shared (kubelet's pod volumes under /var/lib/kubelet). The node's mounts stay
    # slaves of the host's, so nothing mounted in the node reaches the host.
    _mount("--make-rshared", "/")


def _hold_hidden(keep: Sequence[Path]) -> dict[Path, int]:
    """An O_PATH descriptor for each directory the node's own /run, /tmp, /var/lib or /var/log
    will hide: the directory stays reachable through it after the tmpfs goes over its parent."""
    hidden = [Path(root) for root in REPLACED_DIRS]
    held: dict[Path, int] = {}
    for path in keep:
        path = path.resolve()
        if path.is_dir() and any(path.is_relative_to(root) for root in hidden):
            held[path] = os.open(path, os.O_PATH | os.O_DIRECTORY)
    return held


def _put_back(held: dict[Path, int]) -> None:
    for path, fd in held.items():
        path.mkdir(parents=True, exist_ok=True)
        # the descriptor's /proc link, as the kernel resolves it (not as mount(8) would
        # canonicalize its text, which names the now hidden path)
        _mount("--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", str(path))
        os.close(fd)


def join_cgroup(pid: int, path: str, hierarchies: Sequence[str]) -> None:
    """Inside the node: move pid into cgroup `path` (of the node's view) in every hierarchy."""
    for hierarchy in hierarchies:
        directory = CGROUP_MOUNT / hierarchy / path.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        if hierarchy == "cpuset":
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if not (directory / knob).read_text().strip():
                    (directory / knob).write_text((directory.parent / knob).read_text())
        (directory / "cgroup.procs").write_text(str(pid))
