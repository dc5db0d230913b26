"""A cri-py daemon for the bench: its own config, root, run dir, socket and CNI network."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import yaml

from benchlib.network import BenchNet
from benchlib.util import (
    BenchError,
    kill_and_reap,
    pids_mentioning,
    unix_socket_ready,
    unmount_all,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


class CriPyDaemon:
    def __init__(
        self,
        workdir: Path,
        registry_host: str,
        net: BenchNet,
        cgroup_parent: str,
        log_level: str = "info",
        wrapper: list[str] | None = None,
        mirrors: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir.resolve()
        self.registry_host = registry_host
        self.net = net
        self.cgroup_parent = cgroup_parent
        self.log_level = log_level
        # e.g. py-spy record ... -- : the daemon runs under it (then pid is the wrapper's child)
        self.wrapper = wrapper or []
        # upstream hosts (registry.k8s.io, ...) served by the local registry
        self.mirrors = mirrors
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "cri-py.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def config(self) -> dict[str, object]:
        return {
            "listen": self.endpoint,
            "root": str(self.workdir / "root"),
            "run_dir": str(self.workdir / "run"),
            "log_level": self.log_level,
            "cgroup_parent": self.cgroup_parent,
            "cni": {
                "conf_dir": str(self.workdir / "cni-conf"),
                "bin_dirs": ["/usr/lib/cni"],
                "cache_dir": str(self.workdir / "cni-cache"),
            },
            "streaming": {"address": "127.0.0.1", "port": 0},
            "registries": {
                self.registry_host: {"insecure": True},
                **{
                    host: {"mirrors": [f"http://{self.registry_host}"], "mirror_only": True, "insecure": True}
                    for host in self.mirrors
                },
            },
        }

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.net.write_conf_dir(self.workdir / "cni-conf")
        config_path = self.workdir / "cri-py.yaml"
        config_path.write_text(yaml.safe_dump(self.config()))
        log = open(self.workdir / "cri-py.log", "wb")  # noqa: SIM115 - the child keeps it
        cmd = [*self.wrapper, str(REPO / ".venv/bin/cri-py"), "serve", "--config", str(config_path)]
        self._proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True
        )
        log.close()
        proc = self._proc
        wait_until(lambda: unix_socket_ready(self.socket) or proc.poll() is not None, 60, "cri-py's socket")
        if proc.poll() is not None:
            tail = (self.workdir / "cri-py.log").read_text(errors="replace")[-3000:]
            self.stop()
            raise BenchError(f"cri-py exited at start-up:\n{tail}")
        self.pid = self._daemon_pid(proc.pid)

    def _daemon_pid(self, launched: int) -> int:
        """With a wrapper (py-spy) the daemon is the wrapper's child: find it by its socket in argv."""
        if not self.wrapper:
            return launched
        for pid in pids_mentioning(str(self.workdir / "cri-py.yaml")):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm != "py-spy":
                return pid
        return launched

    def log_tail(self, chars: int = 3000) -> str:
        path = self.workdir / "cri-py.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, remove: bool = True) -> None:
        if self._proc is not None:
            if self.wrapper and self.pid and self.pid != self._proc.pid:
                # py-spy writes its profile when its target exits
                try:
                    os.kill(self.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            else:
                self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(60 if self.wrapper else 20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self.cleanup_leftovers()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cleanup_leftovers(self) -> None:
        run_root = self.workdir / "run" / "runtimes" / "runc"
        if run_root.is_dir():
            listing = subprocess.run(
                ["/usr/sbin/runc", "--root", str(run_root), "list", "-q"], capture_output=True, text=True
            )
            for cid in listing.stdout.split():
                subprocess.run(
                    ["/usr/sbin/runc", "--root", str(run_root), "delete", "--force", cid], capture_output=True
                )
        kill_and_reap([p for p in pids_mentioning(str(self.workdir)) if p != os.getpid()])
        unmount_all(self.workdir)
