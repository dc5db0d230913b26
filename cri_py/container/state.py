"""Container states and their transitions, as one table (no I/O).

    CREATING --runtime create ok--> CREATED --start--> RUNNING --exit--> EXITED
                                       \\------------ killed before start ----/
A failed create never leaves CREATING: it is unwound and its record deleted.
Each allowed transition names the lifecycle events it publishes (`cri_py.events`).
"""

from __future__ import annotations

import enum

from cri_py.api import api_pb2
from cri_py.errors import FailedPrecondition
from cri_py.events import EventKind


class ContainerState(enum.StrEnum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


_ALLOWED: dict[tuple[ContainerState, ContainerState], tuple[EventKind, ...]] = {
    (ContainerState.CREATING, ContainerState.CREATED): (EventKind.CREATED,),
    (ContainerState.CREATED, ContainerState.RUNNING): (EventKind.STARTED,),
    (ContainerState.CREATED, ContainerState.EXITED): (EventKind.STOPPED,),
    (ContainerState.RUNNING, ContainerState.EXITED): (EventKind.STOPPED,),
}

CRI_STATE: dict[ContainerState, api_pb2.ContainerState] = {
    ContainerState.CREATING: api_pb2.CONTAINER_UNKNOWN,
    ContainerState.CREATED: api_pb2.CONTAINER_CREATED,
    ContainerState.RUNNING: api_pb2.CONTAINER_RUNNING,
    ContainerState.EXITED: api_pb2.CONTAINER_EXITED,
}


def can_transition(current: ContainerState, new: ContainerState) -> bool:
    return (current, new) in _ALLOWED


def check_transition(current: ContainerState, new: ContainerState) -> tuple[EventKind, ...]:
    """The events the transition publishes; FailedPrecondition if the table forbids it."""
    events = _ALLOWED.get((current, new))
    if events is None:
        raise FailedPrecondition(f"container cannot go from {current} to {new}")
    return events


def exit_reason(exit_code: int, oom_killed: bool) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"
