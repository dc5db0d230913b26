"""What no CRI runtime can beat on this machine: runc and the CNI bridge plugin run directly."""

from __future__ import annotations

import gzip
import io
import json
import os
import select
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib.images import busybox_layer
from benchlib.network import BenchNet
from benchlib.util import remove_cgroup_tree, run

PULL_MEASURE = "PullImage 100 MB (5 layers)"

RUNC = "/usr/sbin/runc"
CNI_BIN = Path("/usr/lib/cni")


def _quiet(cmd: list[str]) -> None:
    # stderr goes to a file, not a pipe: `runc run -d` hands its stdio to the container, and a pipe
    # would then never reach EOF
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(
                f"{' '.join(cmd)}: exit {proc.returncode}: {err.read().decode(errors='replace')}"
            )


def _wait_exit(pid: int, timeout: float = 10) -> None:
    """Wait for a process that is not our child to be gone (runc run -d reparents it)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise RuntimeError(f"pid {pid} did not exit within {timeout} s")
    finally:
        os.close(fd)


class RuncFloor:
    """A busybox bundle run straight through runc, with the same cgroupfs driver as the peers."""

    def __init__(self, workdir: Path, cgroup_parent: str) -> None:
        self.workdir = workdir
        self.root = workdir / "runc-root"
        self.bundle = workdir / "bundle"
        self.cgroup_parent = cgroup_parent
        self._seq = 0
        self._exec_id = ""

    def prepare(self) -> None:
        rootfs = self.bundle / "rootfs"
        rootfs.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        layer = busybox_layer()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob))) as tar:
            tar.extractall(rootfs, filter="fully_trusted")
        run([RUNC, "spec", "--bundle", str(self.bundle)])
        spec_path = self.bundle / "config.json"
        spec = json.loads(spec_path.read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["sleep", "3600"]
        spec["root"]["readonly"] = False
        spec_path.write_text(json.dumps(spec))

    def _runc(self, *args: str) -> None:
        _quiet([RUNC, "--root", str(self.root), *args])

    def _set_cgroup(self, cid: str) -> None:
        spec_path = self.bundle / "config.json"
        spec = json.loads(spec_path.read_text())
        spec["linux"]["cgroupsPath"] = f"{self.cgroup_parent}/{cid}"
        spec_path.write_text(json.dumps(spec))

    def _pid(self, cid: str) -> int:
        state = subprocess.run(
            [RUNC, "--root", str(self.root), "state", cid], capture_output=True, check=True
        )
        return int(json.loads(state.stdout)["pid"])

    def run_kill_delete(self) -> dict[str, float]:
        """One `runc run -d`, then kill, wait for the exit, `runc delete`: seconds per phase and total."""
        self._seq += 1
        cid = f"crib-floor-{os.getpid()}-{self._seq}"
        self._set_cgroup(cid)
        t0 = time.perf_counter()
        self._runc("run", "-d", "--bundle", str(self.bundle), cid)
        t1 = time.perf_counter()
        pid = self._pid(cid)
        t2 = time.perf_counter()
        self._runc("kill", cid, "KILL")
        _wait_exit(pid)
        t3 = time.perf_counter()
        self._runc("delete", cid)
        t4 = time.perf_counter()
        return {"run": t1 - t0, "kill_wait": t3 - t2, "delete": t4 - t3, "total": (t1 - t0) + (t4 - t2)}

    def exec_floor(self, iterations: int, warmup: int) -> list[float]:
        cid = f"crib-floor-{os.getpid()}-exec"
        self._set_cgroup(cid)
        self._runc("run", "-d", "--bundle", str(self.bundle), cid)
        try:
            times = []
            for i in range(warmup + iterations):
                t0 = time.perf_counter()
                self._runc("exec", cid, "true")
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
            return times
        finally:
            pid = self._pid(cid)
            self._runc("kill", cid, "KILL")
            _wait_exit(pid)
            self._runc("delete", cid)

    def start_exec_container(self) -> None:
        """A container kept running for exec_once(), the floor of ExecSync."""
        self._exec_id = f"crib-floor-{os.getpid()}-exec"
        self._set_cgroup(self._exec_id)
        self._runc("run", "-d", "--bundle", str(self.bundle), self._exec_id)

    def exec_once(self) -> float:
        t0 = time.perf_counter()
        self._runc("exec", self._exec_id, "true")
        return time.perf_counter() - t0

    def stop_exec_container(self) -> None:
        pid = self._pid(self._exec_id)
        self._runc("kill", self._exec_id, "KILL")
        _wait_exit(pid)
        self._runc("delete", self._exec_id)

    def cleanup(self) -> None:
        if self.root.is_dir():
            listing = subprocess.run(
                [RUNC, "--root", str(self.root), "list", "--format", "json"], capture_output=True, text=True
            )
            for item in json.loads(listing.stdout or "null") or []:
                subprocess.run(
                    [RUNC, "--root", str(self.root), "delete", "--force", item["id"]], capture_output=True
                )
        remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.workdir, ignore_errors=True)


class CniFloor:
    """The bridge plugin (and host-local) run by hand against a freshly made network namespace."""

    def __init__(self, workdir: Path, net: BenchNet) -> None:
        self.workdir = workdir
        self.net = net
        self.ns_dir = workdir / "netns"
        self._seq = 0

    def _plugin_conf(self) -> bytes:
        conflist = self.net.conflist()
        plugin = dict(conflist["plugins"][0])  # type: ignore[index]
        plugin["cniVersion"] = conflist["cniVersion"]
        plugin["name"] = conflist["name"]
        return json.dumps(plugin).encode()

    def _call(self, command: str, cid: str, netns: Path) -> None:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": str(netns),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(CNI_BIN),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        run([str(CNI_BIN / "bridge")], input_bytes=self._plugin_conf(), env=env)

    def once(self) -> dict[str, float]:
        self._seq += 1
        self.ns_dir.mkdir(parents=True, exist_ok=True)
        netns = self.ns_dir / f"ns{self._seq}"
        cid = f"crib-floor-{os.getpid()}-{self._seq}"
        t0 = time.perf_counter()
        netns.touch()
        run(["unshare", f"--net={netns}", "true"])
        t1 = time.perf_counter()
        self._call("ADD", cid, netns)
        t2 = time.perf_counter()
        self._call("DEL", cid, netns)
        t3 = time.perf_counter()
        subprocess.run(["umount", str(netns)], check=True)
        netns.unlink()
        t4 = time.perf_counter()
        return {"add": t2 - t1, "del": t3 - t2, "add_del": t3 - t1, "netns": (t1 - t0) + (t4 - t3)}

    def cleanup(self) -> None:
        if self.ns_dir.is_dir():
            for ns in self.ns_dir.iterdir():
                subprocess.run(["umount", str(ns)], capture_output=True)
        self.net.remove_bridge()
        shutil.rmtree(self.workdir, ignore_errors=True)


def collect(iterations: int, warmup: int, fn: Callable[[], dict[str, float]]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for i in range(warmup + iterations):
        result = fn()
        if i >= warmup:
            for key, value in result.items():
                samples.setdefault(key, []).append(value)
    return samples


def skopeo_copy_once(ref: str, workdir: Path) -> float:
    """Download and verify an image from the plain-HTTP test registry into a directory."""
    dest = workdir / "skopeo-dir"
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - t0
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


def interleaved_floors(
    runc_floor: RuncFloor, cni_floor: CniFloor, pull_ref: str | None = None, workdir: Path | None = None
) -> dict[str, Callable[[], float]]:
    """Per CRI measure, the same work done by hand (runc_floor's exec container must be running).

    PullImage is set beside `skopeo copy` of the same image to a directory: download and
    digest checks, no unpacking (what no pull can do with less)."""

    def pod() -> float:
        cni = cni_floor.once()
        return cni["netns"] / 2 + cni["add"] + runc_floor.run_kill_delete()["run"]

    def lifecycle() -> float:
        cni = cni_floor.once()
        # a pause process and one container, each run, killed, waited for and deleted
        return (
            cni["netns"]
            + cni["add_del"]
            + runc_floor.run_kill_delete()["total"]
            + runc_floor.run_kill_delete()["total"]
        )

    floors: dict[str, Callable[[], float]] = {
        "RunPodSandbox": pod,
        "CreateContainer+StartContainer": lambda: runc_floor.run_kill_delete()["run"],
        "full lifecycle": lifecycle,
        "ExecSync true": runc_floor.exec_once,
    }
    if pull_ref and workdir is not None and shutil.which("skopeo"):
        floors[PULL_MEASURE] = lambda: skopeo_copy_once(pull_ref, workdir)
    return floors
