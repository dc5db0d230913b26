"""Sandbox states and the transitions between them, as one table (no I/O).

CREATING --run done--> READY --stop / infra died--> NOTREADY --stop--> NOTREADY
    \\--failed after persisting--> NOTREADY            (removal leaves any state)
Each allowed transition names the lifecycle events it publishes (`cri_py.events`): a ready
sandbox was created and started in one go, as containerd reports it.
"""

from __future__ import annotations

import enum

from cri_py.errors import FailedPrecondition
from cri_py.events import EventKind


class SandboxState(enum.StrEnum):
    CREATING = "creating"
    READY = "ready"
    NOTREADY = "notready"


_ALLOWED: dict[tuple[SandboxState, SandboxState], tuple[EventKind, ...]] = {
    (SandboxState.CREATING, SandboxState.READY): (EventKind.CREATED, EventKind.STARTED),
    # never visible, so nothing was announced that a stop would end
    (SandboxState.CREATING, SandboxState.NOTREADY): (),
    (SandboxState.READY, SandboxState.NOTREADY): (EventKind.STOPPED,),
    (SandboxState.NOTREADY, SandboxState.NOTREADY): (),
}


def check_transition(current: SandboxState, new: SandboxState) -> tuple[EventKind, ...]:
    """The events the transition publishes; FailedPrecondition if the table forbids it."""
    events = _ALLOWED.get((current, new))
    if events is None:
        raise FailedPrecondition(f"pod sandbox cannot go from {current} to {new}")
    return events
