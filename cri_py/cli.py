"""`cri-py` command line: serve, config, images, play."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from cri_py.config import Config, ConfigError, load_config
from cri_py.logs import setup_logging


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default /etc/cri-py/cri-py.yaml)")
    parser.add_argument("--listen", help="unix:///PATH of the CRI socket")
    parser.add_argument("--root", help="persistent data directory")
    parser.add_argument("--run-dir", help="runtime state directory")
    parser.add_argument("--log-level", help="debug, info, warning or error")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"listen": args.listen, "root": args.root, "run_dir": args.run_dir, "log_level": args.log_level}
    return {key: value for key, value in flags.items() if value is not None}


def _load(args: argparse.Namespace) -> tuple[Config, dict[str, Any]]:
    overrides = _overrides(args)
    return load_config(args.config, overrides), overrides


def _policy_summary(config: Config) -> dict[str, Any] | None:
    """The signature policy's scopes; raises ConfigError when the file is unusable."""
    policy = config.signature_policy
    if policy is None or not policy.exists():
        return None
    from cri_py.image.policy import load_policy

    return load_policy(policy).summary()


def _serve(args: argparse.Namespace) -> int:
    from cri_py import heap

    heap.limit_arenas()  # before gRPC and the executors start their threads
    from cri_py.daemon import Daemon, DaemonError
    from cri_py.store import DatabaseUnusable

    config, overrides = _load(args)
    _policy_summary(config)  # an unusable policy stops the start before anything is touched
    setup_logging(config.log_level)
    daemon = Daemon(config, args.config, overrides)
    try:
        asyncio.run(daemon.serve())
    except (DaemonError, DatabaseUnusable) as exc:
        print(f"cri-py: {exc}", file=sys.stderr)
        return 1
    return 0


def _config(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    shown = config.to_json()
    summary = _policy_summary(config)
    if summary is not None:
        # derived, not a key: the scopes the policy file sets
        shown["effective_signature_policy"] = summary
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print(yaml.safe_dump(shown, sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `images` and `play` own their argument parsing
    if argv and argv[0] == "images":
        from cri_py.image.cli import images_main

        return int(images_main(argv[1:]))
    if argv and argv[0] == "play":
        from cri_py.play import play_main

        return int(play_main(argv[1:]))

    parser = argparse.ArgumentParser(prog="cri-py", description="A Kubernetes CRI runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the CRI daemon")
    _add_config_flags(serve)
    show = sub.add_parser("config", help="print the effective merged config")
    _add_config_flags(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    sub.add_parser("images", help="import/export images (cri-py images --help)")
    sub.add_parser("play", help="run Kubernetes Pod manifests (cri-py play --help)")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        return _config(args)
    except ConfigError as exc:
        print(f"cri-py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
