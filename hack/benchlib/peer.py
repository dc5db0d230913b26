"""containerd with its CRI plugin (2.x built from its Go module, or Debian's 1.6), in a directory of its own.

Everything it owns (root, state, sockets, runc root, netns pins, CNI conf, registry hosts) lives
under `workdir`; stop() removes pods it left running, unmounts, and deletes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
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

CONTAINERD = "/usr/bin/containerd"  # Debian's 1.6
RUNC = "/usr/sbin/runc"
# containerd puts shim sockets here whatever its state dir is, and its CNI library caches
# results under /var/lib/cni: these go again when empty and no containerd runs any more
_SHIM_SOCKET_DIR = Path("/run/containerd/s")
_CNI_CACHE_DIR = Path("/var/lib/cni/results")


@dataclass(frozen=True)
class ContainerdBuild:
    """Which containerd: its binary, its runc shim, and the config schema it reads."""

    name: str  # the bench's column name
    containerd: Path
    shim: Path | None  # None: containerd finds containerd-shim-runc-v2 on PATH (Debian's)
    config_version: int  # 2 for 1.6, 3 for 2.x


DEBIAN_16 = ContainerdBuild("containerd-1.6", Path(CONTAINERD), None, 2)


def built_2x(build: bool = True) -> ContainerdBuild:
    """containerd 2.x from hack/peers/build (built when absent)."""
    bin_dir = peerbuild.bin_dir("containerd", build=build)
    return ContainerdBuild("containerd", bin_dir / "containerd", bin_dir / "containerd-shim-runc-v2", 3)


def containerd_config_v3(workdir: Path, sandbox_image: str, shim: Path) -> str:
    """containerd 2.x: the CRI plugin split into images, runtime and the gRPC service."""
    images = "plugins.'io.containerd.cri.v1.images'"
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""version = 3
root = "{workdir}/root"
state = "{workdir}/state"
oom_score = 0
# NRI listens on one fixed host socket; snapshotters this host cannot run only log errors
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile"]

[grpc]
  address = "{workdir}/containerd.sock"

[ttrpc]
  address = "{workdir}/containerd.sock.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{workdir}/opt"

[{images}]
  snapshotter = "overlayfs"
  [{images}.pinned_images]
    sandbox = "{sandbox_image}"
  [{images}.registry]
    config_path = "{workdir}/certs.d"

[{runtime}]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [{runtime}.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{workdir}/cni-conf"
    max_conf_num = 1
  [{runtime}.containerd]
    default_runtime_name = "runc"
    [{runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{shim}"
      [{runtime}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{workdir}/runc"
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def containerd_config(workdir: Path, sandbox_image: str) -> str:
    """Debian's containerd 1.6 (config version 2)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{workdir}/root"
state = "{workdir}/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{workdir}/containerd.sock"

[ttrpc]
  address = "{workdir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir}/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{workdir}/cni-conf"
    max_conf_num = 1
  [{cri}.containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{workdir}/runc"
        SystemdCgroup = false
  [{cri}.registry]
    config_path = "{workdir}/certs.d"
"""


def hosts_toml(registry_host: str) -> str:
    return (
        f'server = "http://{registry_host}"\n\n'
        f'[host."http://{registry_host}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
    )


class ContainerdPeer:
    def __init__(
        self,
        workdir: Path,
        registry_host: str,
        sandbox_image: str,
        net: BenchNet,
        build: ContainerdBuild = DEBIAN_16,
        mirrors: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir.resolve()
        self.registry_host = registry_host
        self.sandbox_image = sandbox_image
        self.net = net
        self.build = build
        # upstream hosts (registry.k8s.io, docker.io, ...) served by the local registry
        self.mirrors = mirrors
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.build.name

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def write_files(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.toml"
        if self.build.config_version >= 3:
            assert self.build.shim is not None
            config.write_text(containerd_config_v3(self.workdir, self.sandbox_image, self.build.shim))
        else:
            config.write_text(containerd_config(self.workdir, self.sandbox_image))
        for host in (self.registry_host, *self.mirrors):
            hosts = self.workdir / "certs.d" / host
            hosts.mkdir(parents=True, exist_ok=True)
            (hosts / "hosts.toml").write_text(hosts_toml(self.registry_host))
        self.net.write_conf_dir(self.workdir / "cni-conf")
        return config

    def start(self) -> None:
        config = self.write_files()
        log = open(self.workdir / "containerd.log", "wb")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            [str(self.build.containerd), "--config", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid = self._proc.pid
        (self.workdir / "containerd.pid").write_text(str(self.pid))
        try:
            wait_until(
                lambda: unix_socket_ready(self.socket) or self._proc is None or self._proc.poll() is not None,
                20,
                "containerd's socket",
            )
        except BenchError:
            self.stop()
            raise
        if self._proc.poll() is not None:
            tail = (self.workdir / "containerd.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise BenchError(f"containerd exited at start-up:\n{tail}")

    def stop(self, remove: bool = True) -> None:
        """Stop containerd and leave nothing behind: shims, containers, mounts, netns, files."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        else:
            _stop_by_pidfile(self.workdir / "containerd.pid")
        cleanup_leftovers(self.workdir)
        _remove_shared_dirs()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _remove_shared_dirs() -> None:
    """The fixed directories containerd made outside its own, if empty and no containerd needs them.

    Several peers (the bench, the play tests) may run at once, so who created them says nothing
    about who may remove them; a running containerd or shim does.
    """
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if os.path.basename(exe).startswith("containerd"):
            return
    for d in (_SHIM_SOCKET_DIR, _SHIM_SOCKET_DIR.parent, _CNI_CACHE_DIR, _CNI_CACHE_DIR.parent):
        try:
            d.rmdir()
        except OSError:
            pass


def _stop_by_pidfile(pidfile: Path) -> None:
    """Stop a containerd started by another process (hack/peer-containerd start, then stop)."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if not os.path.basename(cmdline.split(b"\0", 1)[0]).startswith(b"containerd"):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, "containerd to exit")
    except BenchError:
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def cleanup_leftovers(workdir: Path) -> None:
    """Remove what a stopped containerd left under workdir: containers, shims, mounts."""
    runc_root = workdir / "runc"
    if runc_root.is_dir():
        for ns_dir in [runc_root, *[p for p in runc_root.iterdir() if p.is_dir()]]:
            listing = subprocess.run(
                [RUNC, "--root", str(ns_dir), "list", "--format", "json"], capture_output=True, text=True
            )
            for item in json.loads(listing.stdout or "null") or []:
                subprocess.run(
                    [RUNC, "--root", str(ns_dir), "delete", "--force", item["id"]], capture_output=True
                )
    kill_and_reap([p for p in pids_mentioning(str(workdir)) if p != os.getpid()])
    unmount_all(workdir)
