"""Sandbox states and the transitions between them, as one table (no I/O).

CREATING --run done--> READY --stop / infra died--> NOTREADY --stop--> NOTREADY
    \\--failed after persisting--> NOTREADY            (removal leaves any state)
"""

from __future__ import annotations

import enum

from cri_py.errors import FailedPrecondition


class SandboxState(enum.StrEnum):
    CREATING = "creating"
    READY = "ready"
    NOTREADY = "notready"


_ALLOWED: frozenset[tuple[SandboxState, SandboxState]] = frozenset(
    {
        (SandboxState.CREATING, SandboxState.READY),
        (SandboxState.CREATING, SandboxState.NOTREADY),
        (SandboxState.READY, SandboxState.NOTREADY),
        (SandboxState.NOTREADY, SandboxState.NOTREADY),
    }
)


def check_transition(current: SandboxState, new: SandboxState) -> None:
    if (current, new) not in _ALLOWED:
        raise FailedPrecondition(f"pod sandbox cannot go from {current} to {new}")
