"""Where the peers' binaries are: built by hack/peers/build into the version-keyed cache when absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUILD = Path(__file__).resolve().parents[1] / "peers" / "build"


def _query(flag: str, peer: str) -> str:
    return subprocess.run([str(BUILD), flag, peer], capture_output=True, text=True, check=True).stdout.strip()


def version(peer: str) -> str:
    """The pinned version: containerd v2.2.9, crio v1.36.3 (from hack/peers/<peer>/go.mod)."""
    return _query("--version", peer)


def bin_dir(peer: str, build: bool = True) -> Path:
    """The peer's bin directory, built first if a binary is missing (minutes on 2 cores)."""
    if build:
        # its progress goes to our stderr: a cold build is worth seeing
        subprocess.run([str(BUILD), peer], check=True, stdout=sys.stderr)
    return Path(_query("--bin-dir", peer))
