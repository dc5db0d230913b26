"""The command line shared by hack/peer-containerd and hack/peer-crio: start a peer in the background, stop it.

    start --dir DIR --registry 127.0.0.1:PORT --sandbox-image REF [--mirror HOST ...]
          [--subnet-index N | --subnet CIDR --bridge NAME]
    stop --dir DIR

start writes the peer's files under DIR, adds a FORWARD guard for its subnet, starts it detached
and prints its CRI endpoint (unix://DIR/<socket>); DIR/peer.json records the network, so stop needs
only DIR. stop stops it and removes everything: containers and monitors, mounts, namespace pins,
the bridge, the guard, the directory.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from benchlib.network import BenchNet, add_guard, bench_net, own_net, remove_guard


class Peer(Protocol):
    @property
    def endpoint(self) -> str: ...

    def start(self) -> None: ...

    def stop(self, remove: bool = True) -> None: ...


# (workdir, registry host, sandbox image, network, mirrors, options) -> a peer
MakePeer = Callable[[Path, str, str, BenchNet, tuple[str, ...], argparse.Namespace], Peer]


def parse(
    description: str, net_name: str, default_index: int, extra: Callable[[argparse.ArgumentParser], None]
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start")
    start.add_argument("--dir", type=Path, required=True)
    start.add_argument("--registry", required=True, help="127.0.0.1:PORT of the test registry")
    start.add_argument("--sandbox-image", required=True, help="pause image reference in that registry")
    start.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="HOST",
        help="an upstream registry host (registry.k8s.io, docker.io, ...) to serve from --registry; repeatable",
    )
    start.add_argument(
        "--subnet-index",
        type=int,
        default=default_index,
        help=f"N in 10.251.N.0/24 (default {default_index})",
    )
    start.add_argument("--subnet", help="a /24 of the caller's own range instead (needs --bridge)")
    start.add_argument("--bridge", help="the bridge name for --subnet (at most 15 characters)")
    extra(start)
    stop = sub.add_parser("stop")
    stop.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "start" and bool(args.subnet) != bool(args.bridge):
        parser.error("--subnet and --bridge go together")
    args.net_name = net_name
    return args


def _owner(workdir: Path) -> str:
    return f"peer {workdir}"


def run(args: argparse.Namespace, make: MakePeer) -> int:
    workdir = args.dir.resolve()
    note = workdir / "peer.json"
    if args.command == "start":
        if args.subnet:
            net = own_net(args.net_name, args.subnet, args.bridge, workdir)
        else:
            net = bench_net(args.net_name, args.subnet_index, workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps({"subnet": net.subnet, "bridge": net.bridge, "net": net.name}))
        add_guard(_owner(workdir), net.subnet)
        peer = make(workdir, args.registry, args.sandbox_image, net, tuple(args.mirror), args)
        try:
            peer.start()
        except BaseException:
            net.remove_bridge()
            remove_guard(_owner(workdir), net.subnet)
            raise
        # the Popen object dies with this process; stop finds the daemon through its pid file
        print(peer.endpoint)
        return 0
    try:
        saved = json.loads(note.read_text())
    except (OSError, ValueError):
        print(f"no peer started in {workdir} (no {note.name})")
        return 1
    net = own_net(saved["net"].removeprefix("crib-"), saved["subnet"], saved["bridge"], workdir)
    peer = make(workdir, "", "", net, (), args)
    peer.stop()
    net.remove_bridge()
    remove_guard(_owner(workdir), net.subnet)
    return 0
