"""`qig backup` and `qig restore`, run as the console command on real data dirs: a backup taken
while another process writes to the database restores into a different data dir as the same
node; a damaged archive, a running node and an occupied data dir are refused and nothing
changes; in services mode the PostgreSQL database goes through pg_dump and pg_restore."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.hashers import check_password
from django.db import connection

from tests.conftest import fresh_database
from tests.live.product import ROOT, free_port

pytestmark = pytest.mark.timeout(240)

QIG = Path(sys.executable).parent / "qig"
UPLOAD = "data/uploads/knowledge/ab/0123abcd/notes.txt"
# Inserts users in a loop until its stop file appears, one transaction each, after taking the
# database back to federation 0002 (what an older version left: the restore migrates it forward).
WRITER = """
import sys
from pathlib import Path

import django

django.setup()
from django.contrib.auth.models import User
from django.core.management import call_command

call_command("migrate", "federation", "0002_sync", verbosity=0)
stop, n = Path(sys.argv[1]), 0
while not stop.exists():
    User.objects.create(username=f"w{n:06d}", password="!")
    n += 1
print(n, flush=True)
"""


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A private node: its own data dir and port, embedded unless `extra` says otherwise."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "QIG_SECRET_KEY", "QIG_ADMIN_PASSWORD")
    }
    env.update(
        QIG_DATA_DIR=str(data_dir),
        QIG_PORT=str(free_port()),
        QIG_BOOTSTRAP="0",
        DJANGO_SETTINGS_MODULE="qigcenter.settings",
    )
    env.update(extra)
    return env


def qig(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QIG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _owned(data_dir: Path) -> dict[str, str]:
    """Every file and link under the data dir but the database and what is regenerated."""
    found = {}
    for path in sorted(data_dir.rglob("*")):
        relative = str(path.relative_to(data_dir))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file() and not relative.startswith(("qig.sqlite3", "celery-results")):
            found[relative] = _sha(path)
    return found


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir made by `qig init` (a generated admin password), with the files a node owns
    beside files it does not: an upload, a published adapter (a version and its link), a
    federation key, a checkpoint, an upload still arriving and a log."""
    data_dir = tmp_path_factory.mktemp("node")
    done = qig(_env(data_dir), "init")
    assert done.returncode == 0, done.stdout + done.stderr
    files = {
        "uploads/knowledge/ab/0123abcd/notes.txt": os.urandom(200_000),
        "models/kernels/.7.v1700000000000000000/adapter.safetensors": os.urandom(50_000),
        "checkpoints/job-1/step_0000050/weights.safetensors": os.urandom(30_000),
        "federation/node.key": os.urandom(32),
        "uploads/knowledge/.incoming/0f0f.part": b"half an upload",
        "qig-up.log": b"a log line\n",
    }
    for relative, data in files.items():
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(data)
    (data_dir / "federation/node.key").chmod(0o600)
    (data_dir / "models/kernels/7").symlink_to(".7.v1700000000000000000")
    return data_dir


def _users(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db, timeout=20)) as conn:  # open: a running node
        rows = conn.execute("SELECT username FROM auth_user WHERE username LIKE 'w%' ORDER BY 1")
        return [name for (name,) in rows]


def test_it_backs_up_a_node_while_it_writes_and_restores_it_as_the_same_node(
    node: Path, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(stop)],
        cwd=ROOT,
        env=_env(node),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(before := _users(node / "qig.sqlite3")) < 20:
            assert writer.poll() is None and time.monotonic() < deadline, "the writer stalled"
            time.sleep(0.1)
        taken = qig(_env(node), "backup", str(tmp_path))
        written = [str(p) for p in tmp_path.glob("*.tar")] or ["(no backup)"]
        # While it writes, a restore over it is refused: a process has its database open.
        over = qig(_env(node), "restore", "--force", written[0])
        assert writer.poll() is None, "the writer ran through the backup"
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    (archive,) = tmp_path.glob("qig-backup-*Z.tar")  # named by its UTC time, nothing else left
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds the keys
    assert "qig: backup: database:" in taken.stdout and "qig: backup: wrote" in taken.stdout
    assert over.returncode == 1
    assert f"has {node / 'qig.sqlite3'} open" in over.stderr, over.stdout + over.stderr

    target = tmp_path / "elsewhere"
    restored = qig(_env(target), "restore", str(archive))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert all(line.startswith("qig: restore: ") for line in restored.stdout.splitlines())
    assert "qig: restore: verified" in restored.stdout
    assert "qig: restore: database restored (sqlite)" in restored.stdout
    assert "qig: restore: migrations: 2 applied" in restored.stdout  # federation 0003, 0004
    assert "qig: restore: done" in restored.stdout

    # The database: one consistent moment of the writer's (a prefix of its rows, no gap), whole.
    with contextlib.closing(sqlite3.connect(target / "qig.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        columns = {row[1] for row in db.execute("PRAGMA table_info(federation_node)")}
        (admin_hash,) = db.execute("SELECT password FROM auth_user WHERE username = 'admin'")
    users = _users(target / "qig.sqlite3")
    assert users == [f"w{n:06d}" for n in range(len(users))]
    assert len(before) <= len(users) < int(out), (len(before), len(users), out)
    assert "uuid" in columns
    # The files: the same bytes, link and modes; nothing that is not the node's.
    expected = {k: v for k, v in _owned(node).items() if k != "qig-up.log" and ".part" not in k}
    assert _owned(target) == expected
    assert {"secret_key", "admin_password", "federation/node.key", UPLOAD[5:]} <= set(expected)
    assert os.readlink(target / "models/kernels/7") == ".7.v1700000000000000000"
    assert (target / "federation/node.key").stat().st_mode & 0o777 == 0o600
    # The same admin: the password kept in the restored file signs in.
    assert check_password((target / "admin_password").read_text().strip(), admin_hash[0])
    check = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=_env(target),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_it_refuses_a_damaged_backup_and_an_occupied_data_dir(node: Path, tmp_path: Path) -> None:
    # A backup that fails leaves nothing behind, under its final name or a temporary one.
    (tmp_path / "none").mkdir()
    failed = qig(_env(tmp_path / "uninitialised"), "backup", str(tmp_path / "none"))
    assert failed.returncode == 1 and "no database at" in failed.stderr, failed.stderr
    assert list((tmp_path / "none").iterdir()) == []
    taken = qig(_env(node), "backup", str(tmp_path / "node.tar"))
    assert taken.returncode == 0, taken.stdout + taken.stderr
    # Into the data dir of a node (stopped): refused without --force.
    occupied = qig(_env(node), "restore", str(tmp_path / "node.tar"))
    assert occupied.returncode == 1
    assert "already holds a node" in occupied.stderr and "--force" in occupied.stderr

    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes((tmp_path / "node.tar").read_bytes())
    with tarfile.open(damaged) as tar:
        offset = tar.getmember(UPLOAD).offset_data
    with damaged.open("r+b") as handle:
        handle.seek(offset + 100)
        byte = handle.read(1)
        handle.seek(offset + 100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused = qig(_env(target), "restore", "--force", str(damaged))
    assert refused.returncode == 1
    assert f"{UPLOAD} is damaged or was changed" in refused.stderr, refused.stderr
    assert sorted(p.name for p in target.rglob("*")) == ["keep.txt"]  # nothing else written


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="pg_dump/pg_restore need DATABASE_URL pointing to PostgreSQL (services mode)",
)
def test_it_round_trips_postgresql_through_pg_dump_and_pg_restore(db: None, tmp_path: Path) -> None:
    # The source: the tests' own database (`db`), migrated once for the whole run (migrating a
    # fresh one costs 20 s); a marker row of this test's is committed into it, then removed.
    name = connection.settings_dict["NAME"]  # the test database's (settings keep the other)
    source_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
    marker = f"backup-{os.getpid()}"
    query = "SELECT (SELECT count(*) FROM auth_group WHERE name = %s), "
    query += "(SELECT count(*) FROM django_migrations)"
    with psycopg.connect(source_url, autocommit=True) as pg:
        pg.execute("INSERT INTO auth_group (name) VALUES (%s)", (marker,))
    try:
        source = _env(tmp_path / "source", DATABASE_URL=source_url)
        no_tools = qig(dict(source, PATH=str(QIG.parent)), "backup", str(tmp_path))
        assert no_tools.returncode == 1 and "pg_dump not found on PATH" in no_tools.stderr
        assert list(tmp_path.glob("*.tar")) == list(tmp_path.glob(".*")) == []
        taken = qig(source, "backup", str(tmp_path / "pg.tar"))
        assert taken.returncode == 0, taken.stdout + taken.stderr
        assert "pg_dump -Fc" in taken.stdout
        with psycopg.connect(source_url) as pg:
            source_rows = pg.execute(query, (marker,)).fetchone()
    finally:
        with psycopg.connect(source_url, autocommit=True) as pg:
            pg.execute("DELETE FROM auth_group WHERE name = %s", (marker,))
    assert source_rows is not None and source_rows[0] == 1

    with fresh_database("backup_target") as target_db:
        target = _env(tmp_path / "target", **target_db)
        restored = qig(target, "restore", str(tmp_path / "pg.tar"))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "database restored (postgresql)" in restored.stdout
        assert "migrations: 0 applied" in restored.stdout
        with psycopg.connect(target_db["DATABASE_URL"]) as pg:
            assert pg.execute(query, (marker,)).fetchone() == source_rows
        # A second restore replaces it: pg_restore --clean, in one transaction.
        again = qig(target, "restore", "--force", str(tmp_path / "pg.tar"))
        assert again.returncode == 0, again.stdout + again.stderr
        with psycopg.connect(target_db["DATABASE_URL"]) as pg:
            assert pg.execute(query, (marker,)).fetchone() == source_rows
    assert _sha(tmp_path / "target/secret_key") == _sha(tmp_path / "source/secret_key")
