"""Helpers for the `cri-py play` end-to-end tests: run the CLI as a user would, against a daemon."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAY = [sys.executable, "-m", "cri_py.cli", "play"]


@dataclass
class PlayEnv:
    """Where one test's kubelet state lives and which endpoint it drives."""

    endpoint: str
    volume_root: Path
    pod_logs_dir: Path
    played: list[Path] = field(default_factory=list)

    def args(self, *extra: str) -> list[str]:
        return [
            *PLAY,
            *extra,
            "--endpoint",
            self.endpoint,
            "--volume-root",
            str(self.volume_root),
            "--pod-logs-dir",
            str(self.pod_logs_dir),
        ]

    def play(
        self, manifest: Path, *flags: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        if manifest not in self.played:
            self.played.append(manifest)
        result = subprocess.run(
            self.args(str(manifest), *flags), capture_output=True, text=True, cwd=REPO, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"cri-py play {' '.join(flags)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def cleanup(self) -> None:
        """--down for everything played, so a failed test leaves no pods, mounts or cgroups."""
        pods_dir = self.volume_root / "pods"
        uids = [p.name for p in pods_dir.iterdir()] if pods_dir.is_dir() else []
        for manifest in self.played:
            subprocess.run(
                self.args(str(manifest), "--down", "--grace-period", "0"),
                capture_output=True,
                cwd=REPO,
                timeout=120,
            )
        # should --down itself have failed: the pod cgroups kubelet's layout put under /kubepods
        for uid in uids:
            for cgroup in Path("/sys/fs/cgroup").glob(f"*/kubepods/**/pod{uid}"):
                with contextlib.suppress(OSError):
                    cgroup.rmdir()

    def leftovers(self) -> list[str]:
        found = [str(p) for p in self.volume_root.rglob("*")] if self.volume_root.exists() else []
        found += [str(p) for p in self.pod_logs_dir.iterdir()] if self.pod_logs_dir.exists() else []
        prefix = str(self.volume_root)
        with open("/proc/self/mountinfo") as mountinfo:
            found += [f"mount {line.split()[4]}" for line in mountinfo if line.split()[4].startswith(prefix)]
        return found


@contextlib.contextmanager
def play_session(endpoint: str, workdir: Path) -> Iterator[PlayEnv]:
    """A PlayEnv for one test whose pods are --down'ed at the end, whatever happened:

    with play_session(f"unix://{cri.socket}", tmp_path) as play:
        play.play(write_manifest(tmp_path / "pod.yaml", [pod_dict]))
    """
    env = PlayEnv(endpoint, workdir / "volumes", workdir / "pod-logs")
    try:
        yield env
    finally:
        env.cleanup()


def write_manifest(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def with_image(doc: dict[str, Any], image: str) -> dict[str, Any]:
    """The example manifests name docker.io busybox; tests pull the suite registry's instead."""
    for key in ("initContainers", "containers"):
        for container in doc["spec"].get(key, []):
            container["image"] = image
    return doc


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Watch:
    """`cri-py play --watch` in the background; a thread collects its output lines."""

    def __init__(self, env: PlayEnv, manifest: Path, *flags: str) -> None:
        env.played.append(manifest)
        self.proc = subprocess.Popen(
            env.args(str(manifest), "--watch", *flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self.lines: list[str] = []
        self.cursor = 0  # lines before it were matched already
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, needle: str, timeout: float = 60.0) -> str:
        """The next line (after the last match) containing `needle`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(self.cursor, len(self.lines)):
                    if needle in self.lines[index]:
                        self.cursor = index + 1
                        return self.lines[index]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line with {needle!r} in:\n{''.join(self.lines)}")
                self._changed.wait(min(left, 0.5))

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
