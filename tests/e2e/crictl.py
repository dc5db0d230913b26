"""crictl (cri-tools, built by hack/cri-tools/build into the version-keyed cache) against a test daemon."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "cri-tools" / "build"


def crictl_binary() -> Path:
    """The cached crictl; built on first use (a cold Go build takes a few minutes)."""
    bin_dir = Path(
        subprocess.run([str(BUILD), "--bin-dir"], capture_output=True, text=True, check=True).stdout.strip()
    )
    binary = bin_dir / "crictl"
    if not binary.exists():
        subprocess.run([str(BUILD), "crictl"], check=True)
    return binary


def crictl(cri: Any, *args: str, timeout: float = 60.0) -> str:
    """Run `crictl ARGS` against the daemon; its stdout (raises with stderr on failure)."""
    endpoint = f"unix://{cri.socket}"
    proc = subprocess.run(
        [str(crictl_binary()), "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"crictl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects printed one after the other (crictl events prints them indented)."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
