"""The namespace helper `ForkPinner` starts (as CRI-O starts pinns): a fresh, single-threaded
process, because unshare(CLONE_NEWUSER) refuses a multithreaded caller, and a fork of the
daemon is not single-threaded (gRPC's fork handlers re-create its threads in the child).

Standard library only, so it runs as `python -I -S pin_helper.py ...` without the daemon's
imports (and `pinner.py` imports the two in-namespace steps from here).

    pin_helper.py TO_PARENT_FD FROM_PARENT_FD FLAGS USER(0|1) NET(0|1) HOSTNAME

With USER: unshare the user namespace, write "U", wait for "M" (the parent wrote the maps).
Then unshare FLAGS (inside that user namespace), set HOSTNAME, bring lo up, write "N" and wait
for the parent to pin /proc/<pid>/ns/* ("D", or end of file). An error is "E<message>".
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int, what: str) -> None:
    check(_libc.unshare(flags), what)


def set_hostname(hostname: str) -> None:
    name = hostname.encode()
    check(_libc.sethostname(name, len(name)), "sethostname")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def main(argv: list[str]) -> int:
    to_parent, from_parent, flags = int(argv[0]), int(argv[1]), int(argv[2])
    user, net, hostname = argv[3] == "1", argv[4] == "1", argv[5]
    try:
        if user:
            unshare(CLONE_NEWUSER, "unshare user namespace")
            os.write(to_parent, b"U")
            if os.read(from_parent, 1) != b"M":
                return 3  # the parent gave up
        if flags:
            # as the user namespace's creator, the helper holds every capability in it
            unshare(flags, "unshare")
        if hostname:
            set_hostname(hostname)
        if net:
            loopback_up()
        os.write(to_parent, b"N")
        os.read(from_parent, 1)  # pinned (or the parent gave up): done either way
        return 0
    except OSError as exc:
        os.write(to_parent, b"E" + str(exc).encode(errors="replace")[:500])
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
