"""`qig backup [DEST]` and `qig restore SRC [--force]` (docs/operations.md, "Backup and
restore"). Registered by qigcenter/cli.py's parser; the archive's layout is qigcenter/archive.py's.

A backup is taken while the node runs: the database first (SQLite's online backup API, or
`pg_dump`, each one consistent snapshot), then the files the node owns. A restore verifies the
archive, refuses a running node or (without --force) a data dir that holds one, then restores
the database and the files and migrates them forward.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from qigcenter import archive
from qigcenter.archive import OWNED, BackupError


def say(message: str) -> None:
    print(f"qig: {message}", flush=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


# ---- the database -----------------------------------------------------------------------------
def _database() -> tuple[str, Path | None]:
    """('sqlite', its file) or ('postgresql', None), from settings.DATABASES."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return "sqlite", Path(db["NAME"])
    if "postgresql" in db["ENGINE"]:
        return "postgresql", None
    raise BackupError(f"no backup for the database engine {db['ENGINE']}")


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy one SQLite database onto another with the backup API, all pages in one step: the
    copy reads one snapshot (in WAL mode writers go on meanwhile), and SQLite writes the target's
    pages itself, so a stale -wal beside an old target is never replayed over the copy."""
    src = sqlite3.connect(source, timeout=20)
    dst = sqlite3.connect(target, timeout=20)
    try:
        src.backup(dst, pages=-1)
        (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
    finally:
        src.close()
        dst.close()
    if verdict != "ok":
        raise BackupError(f"the copy of {source} fails PRAGMA integrity_check: {verdict}")


def _sqlite_migrations(path: Path) -> dict[str, list[str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT app, name FROM django_migrations ORDER BY app, id").fetchall()
    applied: dict[str, list[str]] = {}
    for app, name in rows:
        applied.setdefault(app, []).append(name)
    return applied


def _pg(tool: str) -> tuple[list[str], dict[str, str]]:
    """`tool` with settings.DATABASES' connection arguments, and its environment."""
    from django.conf import settings

    if shutil.which(tool) is None:
        raise BackupError(
            f"{tool} not found on PATH: install the PostgreSQL client tools "
            "(e.g. `apt install postgresql-client`, the server's major version or newer)"
        )
    db = settings.DATABASES["default"]
    argv = [tool]
    for flag, value in (("-h", db.get("HOST")), ("-p", db.get("PORT")), ("-U", db.get("USER"))):
        if value:
            argv += [flag, str(value)]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    if db.get("OPTIONS", {}).get("sslmode"):
        env["PGSSLMODE"] = str(db["OPTIONS"]["sslmode"])
    return [*argv, "-d", str(db["NAME"])], env


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed (exit {done.returncode}): {done.stderr.strip()}")


def _dump_database(db_file: Path | None, dump: Path) -> tuple[str, dict[str, list[str]]]:
    """Write the database's snapshot to `dump`; (its name in the archive, applied migrations)."""
    if db_file is not None:
        if not db_file.is_file():
            raise BackupError(f"no database at {db_file}: run `qig init` first")
        _sqlite_copy(db_file, dump)
        return "qig.sqlite3", _sqlite_migrations(dump)  # those of the snapshot itself
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    argv, env = _pg("pg_dump")
    applied: dict[str, list[str]] = {}
    for app, name in sorted(MigrationRecorder(connection).applied_migrations()):
        applied.setdefault(app, []).append(name)
    connection.close()
    _run([*argv, "-Fc", "-f", str(dump)], env)
    return "postgres.dump", applied


# ---- backup -----------------------------------------------------------------------------------
def _destination(dest: str | None, now: datetime) -> Path:
    path = Path(dest or ".").expanduser().resolve()
    if path.is_dir():
        path = path / f"qig-backup-{now:%Y%m%dT%H%M%SZ}.tar"
    elif path.suffix != ".tar":
        raise BackupError(f"{path}: give an existing directory or a file name ending in .tar")
    if path.exists():
        raise BackupError(f"{path} already exists")
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a directory")
    return path


def backup(dest: str | None) -> Path:
    import django

    django.setup()
    from django.conf import settings

    from qigcenter import __version__

    now = datetime.now(UTC)
    final = _destination(dest, now)
    engine, db_file = _database()
    mode = "services" if settings.SERVICES_MODE else "embedded"
    say(f"backup: {mode} node ({engine}), data dir {settings.DATA_DIR} → {final}")
    # Temporary names beside the final one (same filesystem: the rename is atomic); a failed or
    # interrupted backup removes them and leaves nothing under the final name.
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    dump = final.with_name(f".{final.name}.{os.getpid()}.db")
    try:
        # 0600, both: they hold password hashes, API tokens, the secret key and federation keys.
        os.close(os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        handle = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        with handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            started = time.monotonic()
            name, migrations = _dump_database(db_file, dump)
            entry = archive.add(tar, PurePosixPath("db", name), dump)
            assert entry is not None, "the database copy was just written"
            how = "SQLite online backup, integrity ok" if db_file else "pg_dump -Fc"
            took = time.monotonic() - started
            say(f"backup: database: {_mib(entry['size'])} ({how}, {took:.1f} s)")
            files = [entry]
            for arcname, path in archive.owned_files(settings.DATA_DIR):
                added = archive.add(tar, arcname, path)
                if added is not None:
                    files.append(added)
            stored = [f for f in files[1:] if "sha256" in f]
            links = len(files) - 1 - len(stored)
            total = _mib(sum(f["size"] for f in stored))
            say(f"backup: files: {len(stored)} files, {links} links, {total} "
                f"({archive.present(settings.DATA_DIR)})")  # fmt: skip
            manifest = {
                "created_at": now.isoformat().replace("+00:00", "Z"),
                "mode": mode,
                "database": engine,
                "version": __version__,
                "federation": settings.FEDERATION or "alone",
                "migrations": migrations,
                "files": files,
            }
            archive.add_manifest(tar, manifest, now.timestamp())
            tar.close()
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)  # the final name appears complete, or not at all
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        tmp.unlink(missing_ok=True)
        dump.unlink(missing_ok=True)
    say(f"backup: wrote {final} ({_mib(final.stat().st_size)}, {len(files)} entries)")
    return final


# ---- restore ----------------------------------------------------------------------------------
def _running_node(db_file: Path | None) -> str | None:
    """Why a node seems to run on this data dir (None: none does). `qig up` has no pid file:
    like it, ask the configured port; then who has the database open."""
    from django.conf import settings

    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.BIND_HOST, settings.BIND_HOST)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.BIND_PORT}/healthz"
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
        if response.status == 200:
            return f"a node answers on {url}"
    if db_file is not None:
        import psutil

        wanted = {str(db_file), f"{db_file}-wal"}
        for process in psutil.process_iter(["cmdline"]):
            if process.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error):
                if any(f.path in wanted for f in process.open_files()):
                    command = " ".join(process.info["cmdline"] or [])[:80]
                    return f"process {process.pid} ({command}) has {db_file} open"
        return None
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        (others,) = cursor.fetchone() or (0,)
    return f"{others} other connection(s) to the database" if others else None


def _holds_node(data_dir: Path, db_file: Path | None) -> str | None:
    """What in the target shows a node lived there (None: nothing). A secret key alone does not
    count: loading the settings writes one."""
    if db_file is not None and db_file.is_file():
        try:
            with contextlib.closing(sqlite3.connect(db_file, timeout=20)) as db:
                if db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    return f"the database {db_file}"
        except sqlite3.Error as exc:
            return f"the database {db_file} ({exc})"
    elif db_file is None:
        from django.db import connection

        if "django_migrations" in connection.introspection.table_names():
            return "the PostgreSQL database (it has Django tables)"
    for name in OWNED[1:]:
        path = data_dir / name
        if path.is_file() or any(p.is_file() for p in path.rglob("*")):
            return str(path)
    return None


def _unknown_migrations(manifest: dict[str, Any]) -> list[str]:
    """Migrations the backup's database has and this version does not know (a newer version's)."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    return [
        f"{app}.{name}"
        for app, names in manifest["migrations"].items()
        if app in loader.migrated_apps
        for name in names
        if (app, name) not in loader.disk_migrations
    ]


def _preflight(manifest: dict[str, Any], force: bool) -> tuple[str, Path | None]:
    """Every refusal, before anything changes; (engine, SQLite file)."""
    from django.conf import settings

    engine, db_file = _database()
    if manifest["database"] != engine:
        raise BackupError(
            f"this backup holds a {manifest['database']} database and this node uses {engine} "
            "(DATABASE_URL): restore it into a node of the same kind"
        )
    if engine == "postgresql":
        _pg("pg_restore")  # a missing tool is said now
    unknown = _unknown_migrations(manifest)
    if unknown:
        raise BackupError(f"this backup comes from a newer version ({manifest['version']}): "
                          f"its migration {unknown[0]} is unknown here; upgrade first")  # fmt: skip
    running = _running_node(db_file)
    if running:
        raise BackupError(f"refusing to restore over a running node: {running}; stop it first")
    held = None if force else _holds_node(settings.DATA_DIR, db_file)
    if held:
        raise BackupError(
            f"refusing to restore into {settings.DATA_DIR}: it already holds a node ({held}); "
            "pass --force to replace it"
        )
    return engine, db_file


def _restore_database(stage: Path, db_file: Path | None) -> None:
    if db_file is not None:
        _sqlite_copy(stage / "db" / "qig.sqlite3", db_file)
        return
    argv, env = _pg("pg_restore")
    flags = ["--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error"]
    _run([*argv, *flags, str(stage / "db" / "postgres.dump")], env)


def _swap_files(stage: Path, data_dir: Path) -> None:
    """Replace each owned path of the data dir with the restored one (absent from the backup:
    removed, so the node is the backup's and nothing of the one it replaces)."""
    trash = stage / "replaced"
    trash.mkdir()
    for name in OWNED:
        current, restored = data_dir / name, stage / "data" / name
        if current.exists() or current.is_symlink():
            os.replace(current, trash / name)
        if restored.exists() or restored.is_symlink():
            os.replace(restored, current)


def restore(src_arg: str, force: bool) -> None:
    src = Path(src_arg).expanduser().resolve()
    say(f"restore: verifying {src}")
    manifest = archive.verify(src)  # first: a bad archive changes nothing
    say(f"restore: verified {len(manifest['files'])} entries against the manifest (taken "
        f"{manifest['created_at']}, version {manifest['version']}, {manifest['mode']}, "
        f"{manifest['database']})")  # fmt: skip
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    engine, db_file = _preflight(manifest, force)
    data_dir: Path = settings.DATA_DIR
    say(f"restore: data dir {data_dir} has no running node" + (" (--force)" if force else ""))
    connection.close()
    stage = data_dir / f".qig-restore-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    swapped = False
    try:
        archive.extract(src, stage, manifest)
        _restore_database(stage, db_file)
        say(f"restore: database restored ({engine})")
        _swap_files(stage, data_dir)
        swapped = True
    finally:
        if swapped or not (stage / "replaced").exists():
            shutil.rmtree(stage, ignore_errors=True)
        else:  # interrupted between two renames: keep what was replaced
            print(f"qig: restore: the replaced files are kept in {stage}", file=sys.stderr)
    say(f"restore: files restored into {data_dir} ({archive.present(data_dir)})")
    role = settings.FEDERATION or "alone"
    if manifest["federation"] != role:
        say(f"restore: note: the backup's node ran as {manifest['federation']}, this "
            f"configuration as {role}: set QIG_FEDERATION to match")  # fmt: skip
    if "data/secret_key" not in {entry["path"] for entry in manifest["files"]}:
        say("restore: the backup has no secret_key (the node had QIG_SECRET_KEY): start this "
            "node with the same QIG_SECRET_KEY")  # fmt: skip
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    call_command("migrate", interactive=False, verbosity=0)
    connection.close()
    say(f"restore: migrations: {len(pending)} applied")
    say("restore: done — start the node with `qig up`")


# ---- the command line -------------------------------------------------------------------------
def cmd_backup(args: argparse.Namespace) -> int:
    try:
        backup(args.dest)
    except (BackupError, OSError, sqlite3.Error) as exc:  # e.g. a full disk: said, not a trace
        print(f"qig: backup failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qig: backup interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        restore(args.src, args.force)
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"qig: restore failed: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    backup_p = sub.add_parser("backup", help="copy the database and the node's files into a .tar")
    backup_p.add_argument(
        "dest", nargs="?", default=None, help="a directory (default: .) or a file name ending .tar"
    )
    backup_p.set_defaults(func=cmd_backup)
    restore_p = sub.add_parser("restore", help="restore a `qig backup` into this data dir")
    restore_p.add_argument("src", help="the .tar written by `qig backup`")
    restore_p.add_argument(
        "--force", action="store_true", help="replace the node this data dir already holds"
    )
    restore_p.set_defaults(func=cmd_restore)
