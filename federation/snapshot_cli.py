"""`qig snapshot export [DIR]` and `qig snapshot import DIR` (docs/snapshots.md). Registered by
qigcenter/cli.py's parser; `at_start` is the start-up import `qig up` / `qig serve` run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _setup() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from constellation.services import ensure_kernels

    ensure_kernels()


def cmd_snapshot(args: argparse.Namespace) -> int:
    _setup()
    from federation import snapshot_import, snapshots

    try:
        if args.action == "export":
            root = Path(args.dir).expanduser() if args.dir else snapshots.default_dir()
            exported = snapshots.export(root)
            assert exported is not None  # written whatever the newest holds
            kernels = ", ".join(map(str, exported.kernels)) or "none"
            print(f"qig: snapshot {exported.version} exported to {exported.path}: "
                  f"{exported.count} patterns (kernels: {kernels})")  # fmt: skip
            return 0
        imported = snapshot_import.import_snapshot(Path(args.dir).expanduser())
    except snapshots.SnapshotError as exc:
        print(f"qig: snapshot {args.action}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"qig: snapshot {args.action}: error: {exc}", file=sys.stderr)
        return 1
    print(f"qig: {imported.line()}")
    return 0


def at_start() -> None:
    """`qig up` / `qig serve`, once the database is prepared: import the newest snapshot of
    `QIG_SNAPSHOT_DIR` once (docs/snapshots.md, "Start-up import")."""
    from federation.snapshot_import import at_start as import_at_start

    said = import_at_start()
    if said:
        print(f"qig: {said}", flush=True)


def add_parser(sub: Any) -> None:
    snapshot = sub.add_parser("snapshot", help="export or import the high-value patterns")
    actions = snapshot.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write a new snapshot version (keeps the last 5)")
    export.add_argument(
        "dir", nargs="?", default=None, help="default $QIG_SNAPSHOT_DIR or <data dir>/snapshots"
    )
    imported = actions.add_parser("import", help="learn the patterns of a snapshot")
    imported.add_argument("dir", help="a snapshot version, or a directory of them (the newest)")
    snapshot.set_defaults(func=cmd_snapshot)
