"""The daemon's version is pyproject's, and a fresh daemon process does not load what only
some requests need (importlib.metadata's email/zipfile, websockets): each is resident memory
on every node."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import cri_py

REPO = Path(__file__).resolve().parents[3]


def test_version_is_pyprojects() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert cri_py.__version__ == project["version"]


def test_starting_the_daemon_loads_neither_websockets_nor_importlib_metadata() -> None:
    probe = (
        "import sys, cri_py.cli, cri_py.daemon, cri_py.services, cri_py.server.app, cri_py.streaming.server;"
        "print(sorted(m for m in ('websockets', 'importlib.metadata', 'email') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
