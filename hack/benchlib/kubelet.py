"""--node's last part: a Deployment through the real kubelet (hack/node), cri-py against containerd 2.x."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HACK = Path(__file__).resolve().parents[1]


def deployments(args: argparse.Namespace, runtimes: list[str]) -> dict[str, Any]:
    if not (HACK / "node").exists():
        return {"skipped": "hack/node (issue 11) is not in this checkout yet"}
    return {"skipped": "hack/node cannot run kubelet on containerd yet"}


def render(result: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    if not result:
        return [], []
    if "skipped" in result:
        line = f"Deployment through the real kubelet: not measured ({result['skipped']})."
        return [line], [line]
    return [], []
