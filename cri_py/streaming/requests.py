"""The requests a token stands for: everything the streaming server needs after the RPC."""

from __future__ import annotations

from dataclasses import dataclass

from cri_py.streaming.backend import AttachTarget, ExecTarget, PortForwardTarget


@dataclass(frozen=True)
class ExecRequest:
    target: ExecTarget
    cmd: tuple[str, ...]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool


@dataclass(frozen=True)
class AttachRequest:
    target: AttachTarget
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool


@dataclass(frozen=True)
class PortForwardRequest:
    target: PortForwardTarget
    pod_id: str
    # Ports named in the RPC; WebSocket clients name theirs in the URL query instead.
    ports: tuple[int, ...] = ()


StreamRequest = ExecRequest | AttachRequest | PortForwardRequest
