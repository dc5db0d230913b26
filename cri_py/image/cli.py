"""`cri-py images import FILE` / `cri-py images export REF FILE`: work on the store directly.

A running daemon notices the import at its next image lookup (the database's data version
changes), so no restart is needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cri_py.config import ConfigError, load_config
from cri_py.errors import CriError
from cri_py.image.service import ImageService
from cri_py.store import Database


def images_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cri-py images", description="Import and export images.")
    parser.add_argument("--config", type=Path, help="config file (default /etc/cri-py/cri-py.yaml)")
    parser.add_argument("--root", help="persistent data directory (overrides the config)")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="load an OCI image layout or docker-archive tarball")
    imp.add_argument("file", type=Path)
    exp = sub.add_parser("export", help="write an image as an OCI layout + docker-archive tarball")
    exp.add_argument("ref")
    exp.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, {"root": args.root} if args.root else None)
    except ConfigError as exc:
        print(f"cri-py: {exc}", file=sys.stderr)
        return 2
    db = Database(config.root / "state.db")
    try:
        images = ImageService(config, db)
        if args.command == "import":
            for record in images.import_archive(args.file):
                names = " ".join(record.repo_tags) or "(untagged)"
                print(f"{record.id} {names}")
        else:
            record = images.export_archive(args.ref, args.file)
            print(f"{record.id} -> {args.file}")
    except (CriError, OSError, ValueError, KeyError) as exc:
        print(f"cri-py images {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    return 0
