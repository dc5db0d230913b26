"""The termination message kubelet reports for an exited container: the file behind
terminationMessagePath, or with FallbackToLogsOnError and a failure, the tail of its log."""

from __future__ import annotations

from typing import Any

from cri_py.play import translate

MAX_MESSAGE_BYTES = 4096  # kubelet reads at most this much of the message file
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048


def _read_head(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode(errors="replace")
    except OSError:
        return ""


def log_tail(path: str) -> str:
    """The last lines of a CRI-format log ("<time> <stream> <P|F> <text>"), as the text written."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            raw = handle.read().decode(errors="replace")
    except OSError:
        return ""
    pieces: list[str] = []
    for line in raw.splitlines()[-LOG_TAIL_LINES:]:
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else ""
        pieces.append(text if parts[2] == "P" else text + "\n")
    joined = "".join(pieces)
    return joined[-LOG_TAIL_BYTES:]


def termination_message(status: Any) -> str:
    """getTerminationMessage for a ContainerStatus (its annotations say where and how)."""
    annotations = dict(status.annotations)
    path = annotations.get(translate.TERMINATION_MESSAGE_PATH, "")
    message = ""
    for mount in status.mounts:
        if path and mount.container_path == path:
            message = _read_head(mount.host_path, MAX_MESSAGE_BYTES)
            break
    fallback = annotations.get(translate.TERMINATION_MESSAGE_POLICY) == "FallbackToLogsOnError"
    if not message and fallback and status.exit_code != 0 and status.log_path:
        message = log_tail(status.log_path)
    return message
