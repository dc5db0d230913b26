"""`cri-py play --status`: the pods of a manifest and their containers as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cri_py.api import api_pb2
from cri_py.play import translate
from cri_py.play.runner import Player
from cri_py.play.termination import termination_message

HEADERS = ("POD", "SANDBOX", "POD STATE", "IP", "CONTAINER", "STATE", "RESTARTS", "MESSAGE")
MESSAGE_WIDTH = 50
ContainerState = api_pb2.ContainerState


@dataclass(frozen=True)
class Row:
    pod: str
    sandbox: str
    pod_state: str
    ip: str
    container: str
    state: str
    restarts: str
    message: str = ""


def container_state_text(status: Any) -> str:
    """Running / Created / Exited(1, Error) / Unknown."""
    if status.state == ContainerState.CONTAINER_RUNNING:
        return "Running"
    if status.state == ContainerState.CONTAINER_CREATED:
        return "Created"
    if status.state == ContainerState.CONTAINER_EXITED:
        reason = f", {status.reason}" if status.reason else ""
        return f"Exited({status.exit_code}{reason})"
    return "Unknown"


def short_message(status: Any) -> str:
    """The termination message (or the runtime's) on one line, cut to fit the table."""
    text = termination_message(status) if status.state == ContainerState.CONTAINER_EXITED else ""
    text = " ".join((text or status.message).split())
    return text if len(text) <= MESSAGE_WIDTH else text[: MESSAGE_WIDTH - 3] + "..."


def newest_per_name(containers: list[Any]) -> list[Any]:
    """The latest instance of each container name, in creation order of the first instance."""
    newest: dict[str, Any] = {}
    for container in sorted(containers, key=lambda c: c.created_at):
        newest[container.metadata.name] = container
    return list(newest.values())


async def pod_rows(player: Player, namespace: str, name: str) -> list[Row]:
    label = f"{namespace}/{name}"
    sandboxes = await player.sandboxes(namespace, name)
    if not sandboxes:
        return [Row(label, "-", "NotFound", "-", "-", "-", "-")]
    rows: list[Row] = []
    for sandbox in sandboxes:
        ready = sandbox.state == api_pb2.PodSandboxState.SANDBOX_READY
        ips = await player.pod_ips(sandbox.id)
        first = True
        containers = newest_per_name(await player.containers(sandbox.id))
        for container in containers:
            status = await player.container_status(container.id)
            restarts = container.annotations.get(translate.RESTART_COUNT, str(container.metadata.attempt))
            rows.append(
                Row(
                    label if first else "",
                    sandbox.id[:13] if first else "",
                    ("Ready" if ready else "NotReady") if first else "",
                    (",".join(ips) or "-") if first else "",
                    container.metadata.name,
                    container_state_text(status),
                    restarts,
                    short_message(status),
                )
            )
            first = False
        if first:
            rows.append(
                Row(
                    label,
                    sandbox.id[:13],
                    "Ready" if ready else "NotReady",
                    ",".join(ips) or "-",
                    "-",
                    "-",
                    "-",
                )
            )
    return rows


def format_table(rows: list[Row]) -> str:
    table = [HEADERS] + [
        (r.pod, r.sandbox, r.pod_state, r.ip, r.container, r.state, r.restarts, r.message) for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in table
    )
