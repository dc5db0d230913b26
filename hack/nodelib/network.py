"""The node's network namespace: pinned under the node directory, joined to the host by a veth pair.

The namespace has no default route, so nothing in it (the node, its pods) reaches past the
node suite's own addresses; a FORWARD rule on the host drops anything from 10.215.0.0/16 that
would leave it all the same, and one inside the node drops pod traffic leaving the range.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from pathlib import Path

from nodelib.layout import SLOTS, SUPERNET, Layout, Slot


class NodeError(Exception):
    """A step of bringing the node up or down failed; the message says which and why."""


def run(cmd: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def in_netns(layout: Layout) -> list[str]:
    """The prefix that runs a command in the node's network namespace (and nothing else of it)."""
    return ["nsenter", f"--net={layout.netns_pin}", "--"]


def netns_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pinned(layout: Layout) -> bool:
    pin = str(layout.netns_pin)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return any(line.split()[4] == pin for line in info)


def create_netns(layout: Layout) -> None:
    layout.netns_pin.touch()
    run(["unshare", f"--net={layout.netns_pin}", "true"])


def claim_slot(layout: Layout) -> Slot:
    """The first free slot, claimed by creating its host veth (the name is the lock)."""
    for index in SLOTS:
        slot = Slot(index)
        if Path(f"/sys/class/net/{slot.host_veth}").exists():
            continue
        proc = run(
            ["ip", "link", "add", slot.host_veth, "type", "veth", "peer", "name", "eth0",
             "netns", str(layout.netns_pin)],
            check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            return slot
    raise NodeError(f"no free node slot: cripynd0h..cripynd{SLOTS[-1]}h all exist")


def configure(layout: Layout, slot: Slot) -> None:
    netns = in_netns(layout)
    run(["ip", "addr", "add", f"{slot.host_address}/{slot.link_prefix}", "dev", slot.host_veth])
    run(["ip", "link", "set", slot.host_veth, "up"])
    run([*netns, "ip", "link", "set", "lo", "up"])
    run([*netns, "ip", "addr", "add", f"{slot.node_address}/{slot.link_prefix}", "dev", "eth0"])
    run([*netns, "ip", "link", "set", "eth0", "up"])
    # pods may talk to each other and to the node; nothing they send leaves the suite's range
    run([*netns, "iptables", "-w", "-I", "FORWARD", "-s", slot.pod_subnet, "!", "-d", SUPERNET, "-j", "DROP"])
    add_host_guard(slot)


def _host_guard(slot: Slot) -> list[str]:
    return ["FORWARD", "-s", SUPERNET, "!", "-d", SUPERNET, "-m", "comment", "--comment",
            f"cri-py node guard {slot.name}", "-j", "DROP"]  # fmt: skip


def add_host_guard(slot: Slot) -> None:
    if run(["iptables", "-w", "-C", *_host_guard(slot)], check=False).returncode != 0:
        run(["iptables", "-w", "-I", *_host_guard(slot)])


def remove_host_guard(slot: Slot) -> None:
    while run(["iptables", "-w", "-D", *_host_guard(slot)], check=False).returncode == 0:
        pass


def host_guard_present(slot: Slot) -> bool:
    return run(["iptables", "-w", "-C", *_host_guard(slot)], check=False).returncode == 0


def remove_netns(layout: Layout, slot: Slot | None) -> None:
    """Delete the veth pair (its peer goes with it) and unpin the namespace."""
    if slot is not None:
        run(["ip", "link", "del", slot.host_veth], check=False)
        remove_host_guard(slot)
    if pinned(layout):
        run(["umount", str(layout.netns_pin)], check=False)
        if pinned(layout):
            run(["umount", "-l", str(layout.netns_pin)], check=False)
    with contextlib.suppress(FileNotFoundError):
        layout.netns_pin.unlink()


def processes_in_netns(layout: Layout) -> list[int]:
    """Every process whose network namespace is the node's (how `down` finds all of them)."""
    target = netns_id(layout.netns_pin) if pinned(layout) else None
    if target is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if (
            entry.isdigit()
            and int(entry) != os.getpid()
            and netns_id(Path(f"/proc/{entry}/ns/net")) == target
        ):
            found.append(int(entry))
    return found


_CLONE_NEWNET = 0x40000000


def socket_in_netns(layout: Layout) -> socket.socket:
    """A TCP socket that lives in the node's namespace (made by a thread that enters it with
    setns(2) and leaves again; a socket keeps the namespace it was created in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    made: list[socket.socket] = []
    errors: list[BaseException] = []

    def work() -> None:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(layout.netns_pin, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the node namespace")
            try:
                made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC))
            finally:
                if libc.setns(own, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(target)
            os.close(own)

    thread = threading.Thread(target=work, name="node-netns", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return made[0]
