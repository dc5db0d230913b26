"""The container and sandbox state tables, exit reasons, and the CRI log splitter."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_py.container.state import ContainerState, can_transition, check_transition, exit_reason
from cri_py.errors import FailedPrecondition
from cri_py.oci.runtime import read_cri_log_streams
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


def test_cri_log_split(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(
        b"2026-01-01T00:00:00.000000000+00:00 stdout F hello\n"
        b"2026-01-01T00:00:00.000000000+00:00 stderr P par\n"
        b"2026-01-01T00:00:00.000000000+00:00 stderr F tial\n"
        b"2026-01-01T00:00:00.000000000+00:00 stdout P no newline\n"
    )
    assert read_cri_log_streams(log) == (b"hello\nno newline", b"partial\n")
    assert read_cri_log_streams(tmp_path / "missing") == (b"", b"")
