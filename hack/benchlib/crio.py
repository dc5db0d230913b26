"""CRI-O (built from its Go module by hack/peers/build), isolated in a directory of its own.

Every path CRI-O would otherwise take from the host (storage root and run root, its version and
clean-shutdown files, exits and attach dirs, namespace pins, config drop-in dir, registries.conf,
storage.conf, signature policy, CNI conf) points under `workdir`; NRI and irqbalance handling are
off, so it shares no host-wide file with another runtime. It runs the same runc and conmon as
cri-py, cgroupfs, and drops the infra container where the pod shares no PID namespace (its default).
stop() removes pods it left running, unmounts, and deletes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from benchlib import peerbuild
from benchlib.network import BenchNet
from benchlib.util import (
    BenchError,
    kill_and_reap,
    pids_mentioning,
    unix_socket_ready,
    unmount_all,
    wait_until,
)

RUNC = "/usr/sbin/runc"
CONMON = "/usr/bin/conmon"
# Host paths CRI-O writes whatever its configuration says: the CNI library's result cache and
# containers/image's blob-info cache. Each peer notes which of them it made (deepest last), and
# the last CRI-O to stop removes those, if empty or only the cache; a runtime still running keeps them.
_HOST_PATHS = (
    Path("/var/lib/cni"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/containers"),
    Path("/var/lib/containers/cache"),
    Path("/var/lib/containers/cache/blob-info-cache-v1.sqlite"),
)
_MADE_NOTE = "host-paths-made"
# CRI-O makes a `crio` cgroup in every hierarchy for itself and keeps it after it exits
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CGROUPS_NOTE = "cgroups-made"


def crio_config(workdir: Path, pause_image: str, pinns: Path, runtime: str = RUNC) -> str:
    return f"""[crio]
root = "{workdir}/storage"
runroot = "{workdir}/run/storage"
storage_driver = "overlay"
log_dir = "{workdir}/pod-logs"
version_file = "{workdir}/run/version"
version_file_persist = "{workdir}/version"
clean_shutdown_file = "{workdir}/clean.shutdown"

[crio.api]
listen = "{workdir}/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
namespaces_dir = "{workdir}/run/ns"
pinns_path = "{pinns}"
container_exits_dir = "{workdir}/run/exits"
container_attach_socket_dir = "{workdir}/run/attach"
irqbalance_config_file = ""
irqbalance_config_restore_file = "disable"
log_to_journald = false

[crio.runtime.runtimes.runc]
runtime_path = "{runtime}"
runtime_type = "oci"
runtime_root = "{workdir}/runc"
monitor_path = "{CONMON}"
monitor_cgroup = "pod"

[crio.image]
pause_image = "{pause_image}"
# the pause image's own entrypoint (ours is catatonit, not /pause)
pause_command = ""
signature_policy = "{workdir}/policy.json"
signature_policy_dir = "{workdir}/policies"
namespaced_auth_dir = "{workdir}/auth"

[crio.network]
network_dir = "{workdir}/cni-conf"
plugin_dirs = ["/usr/lib/cni"]

[crio.nri]
enable_nri = false

[crio.metrics]
enable_metrics = false
"""


def registries_conf(registry_host: str, mirrors: tuple[str, ...]) -> str:
    """The local registry without TLS; upstream hosts redirected onto it."""
    entries = [f'[[registry]]\nlocation = "{registry_host}"\ninsecure = true\n']
    entries += [
        f'[[registry]]\nprefix = "{host}"\nlocation = "{registry_host}"\ninsecure = true\n'
        for host in mirrors
    ]
    return "\n".join(entries)


def storage_conf(workdir: Path) -> str:
    return (
        f'[storage]\ndriver = "overlay"\ngraphroot = "{workdir}/storage"\nrunroot = "{workdir}/run/storage"\n'
    )


class CrioPeer:
    name = "cri-o"

    def __init__(
        self,
        workdir: Path,
        registry_host: str,
        pause_image: str,
        net: BenchNet,
        mirrors: tuple[str, ...] = (),
        build: bool = True,
        clamp_oom: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.registry_host = registry_host
        self.pause_image = pause_image
        self.net = net
        self.mirrors = mirrors
        self._build = build
        # runc behind runc-oom-clamp (hack/peers/runc-oom-clamp.c): negative OOM score adjustments
        # become 0, as containerd's restrict_oom_score_adj does, for hosts without CAP_SYS_RESOURCE
        self.clamp_oom = clamp_oom
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "crio.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def write_files(self, bin_dir: Path) -> list[str]:
        w = self.workdir
        for sub in ("crio.conf.d", "registries.conf.d", "run", "pod-logs"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        runtime = str(bin_dir / "runc-oom-clamp") if self.clamp_oom else RUNC
        (w / "crio.conf").write_text(crio_config(w, self.pause_image, bin_dir / "pinns", runtime))
        (w / "registries.conf").write_text(registries_conf(self.registry_host, self.mirrors))
        (w / "storage.conf").write_text(storage_conf(w))
        (w / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.net.write_conf_dir(w / "cni-conf")
        return [
            str(bin_dir / "crio"),
            "--config", str(w / "crio.conf"),
            "--config-dir", str(w / "crio.conf.d"),
            "--registries-conf", str(w / "registries.conf"),
            "--registries-conf-dir", str(w / "registries.conf.d"),
        ]  # fmt: skip

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = self.write_files(peerbuild.bin_dir("crio", build=self._build))
        absent = [str(p) for p in _HOST_PATHS if not p.exists()]
        (self.workdir / _MADE_NOTE).write_text("\n".join(absent))
        (self.workdir / _CGROUPS_NOTE).write_text("\n".join(str(p) for p in _own_cgroups() if not p.exists()))
        env = {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(self.workdir / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.workdir / "registries.conf"),
        }
        log = open(self.workdir / "crio.log", "wb")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        log.close()
        self.pid = self._proc.pid
        (self.workdir / "crio.pid").write_text(str(self.pid))
        proc = self._proc
        try:
            wait_until(
                lambda: unix_socket_ready(self.socket) or proc.poll() is not None, 60, "CRI-O's socket"
            )
        except BenchError:
            self.stop(remove=False)
            raise
        if proc.poll() is not None:
            tail = (self.workdir / "crio.log").read_text(errors="replace")[-3000:]
            self.stop()
            raise BenchError(f"CRI-O exited at start-up:\n{tail}")

    def stop(self, remove: bool = True) -> None:
        """Stop CRI-O and leave nothing behind: conmons, containers, mounts, namespace pins, files."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        else:
            _stop_by_pidfile(self.workdir / "crio.pid")
        cleanup_leftovers(self.workdir)
        _remove_host_paths(self.workdir / _MADE_NOTE)
        _remove_cgroups(self.workdir / _CGROUPS_NOTE)
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _runtime_running() -> bool:
    """A CRI-O, containerd or cri-py still runs on this host (it may use the shared caches)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = {os.path.basename(a) for a in argv[:2]}
        if names & {b"crio", b"containerd", b"cri-py"}:
            return True
    return False


def _remove_host_paths(note: Path) -> None:
    try:
        made = [Path(line) for line in note.read_text().splitlines() if line]
    except OSError:
        return
    if not made or _runtime_running():
        return
    for path in reversed(made):
        try:
            if path.is_dir():
                path.rmdir()
            elif path.name.startswith("blob-info-cache"):
                path.unlink()
        except OSError:
            pass


def _own_cgroups() -> list[Path]:
    if not _CGROUP_ROOT.is_dir():
        return []
    return [h / "crio" for h in sorted(_CGROUP_ROOT.iterdir()) if h.is_dir()]


def _remove_cgroups(note: Path) -> None:
    """The `crio` cgroups this run made; one still in use (another CRI-O) stays (rmdir: EBUSY)."""
    try:
        made = [Path(line) for line in note.read_text().splitlines() if line]
    except OSError:
        return
    for path in made:
        try:
            path.rmdir()
        except OSError:
            pass


def _stop_by_pidfile(pidfile: Path) -> None:
    """Stop a CRI-O started by another process (hack/peer-crio start, then stop)."""
    try:
        pid = int(pidfile.read_text())
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except (OSError, ValueError):
        return
    if os.path.basename(argv0) != b"crio":
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 20, "CRI-O to exit")
    except BenchError:
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def cleanup_leftovers(workdir: Path) -> None:
    """What a stopped CRI-O leaves under workdir: containers (CRI-O keeps them running), conmons, mounts."""
    runc_root = workdir / "runc"
    if runc_root.is_dir():
        listing = subprocess.run(
            [RUNC, "--root", str(runc_root), "list", "-q"], capture_output=True, text=True
        )
        for cid in listing.stdout.split():
            subprocess.run([RUNC, "--root", str(runc_root), "delete", "--force", cid], capture_output=True)
    kill_and_reap([p for p in pids_mentioning(str(workdir)) if p != os.getpid()])
    unmount_all(workdir)
