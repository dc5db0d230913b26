"""The container and sandbox state tables and exit reasons."""

from __future__ import annotations

import pytest

from cri_py.container.state import ContainerState, can_transition, check_transition, exit_reason
from cri_py.errors import FailedPrecondition
from cri_py.pod.state import SandboxState
from cri_py.pod.state import check_transition as check_pod


def test_container_transitions() -> None:
    assert can_transition(ContainerState.CREATED, ContainerState.RUNNING)
    assert can_transition(ContainerState.CREATED, ContainerState.EXITED)
    assert not can_transition(ContainerState.EXITED, ContainerState.RUNNING)
    with pytest.raises(FailedPrecondition):
        check_transition(ContainerState.RUNNING, ContainerState.CREATED)


def test_sandbox_transitions() -> None:
    check_pod(SandboxState.CREATING, SandboxState.READY)
    check_pod(SandboxState.NOTREADY, SandboxState.NOTREADY)
    with pytest.raises(FailedPrecondition):
        check_pod(SandboxState.NOTREADY, SandboxState.READY)


def test_exit_reasons() -> None:
    assert exit_reason(0, False) == "Completed"
    assert exit_reason(1, False) == "Error"
    assert exit_reason(137, True) == "OOMKilled"
