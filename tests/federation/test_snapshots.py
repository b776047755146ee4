"""Snapshots (docs/snapshots.md): export, import, the schedule and the start-up import, with real
learning signals in the test database, real files, and the `qig` command run as a process on
data dirs of its own."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from constellation.engine.checkpoint import save_trunk
from constellation.engine.config import trunk_preset
from constellation.engine.model import Trunk
from constellation.interactions import Asked, record
from constellation.interactions import Client as Caller
from constellation.models import Interaction
from constellation.services import ensure_kernels
from federation import snapshot_cli, snapshot_import, snapshot_tasks, snapshots
from federation.patterns import high_value_patterns, make
from federation.snapshots import MANIFEST, PATTERNS, SnapshotError
from federation.status import history
from learning.improve import LOOP_PRIORITY
from learning.models import FineTuneJob, JobKind, LearningEvent, LearningSignal
from tests.learning import tiny
from tests.live.product import ROOT

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]

QIG = Path(sys.executable).parent / "qig"


@pytest.fixture(autouse=True)
def node(settings, tmp_path: Path) -> Path:
    """A node of its own: data dir, models, uploads; no snapshot dir set."""
    settings.DATA_DIR = tmp_path / "data"
    settings.MODELS_DIR = tmp_path / "data" / "models"
    settings.MEDIA_ROOT = str(tmp_path / "data" / "uploads")
    settings.SNAPSHOT_DIR = None
    settings.DATA_DIR.mkdir(parents=True)
    return Path(settings.DATA_DIR)


def with_model(settings) -> None:
    """A published coordizer and trunk (the tiny preset): what adapter jobs need to be queued."""
    tiny.save_coordizer(settings.MODELS_DIR)
    trunk = Trunk(trunk_preset("tiny", vocab_size=tiny.coordizer().vocab_size))
    save_trunk(trunk, settings.MODELS_DIR / "trunk")
    ensure_kernels()


def answered(question: str, kernel: int | None, response: str = "an answer") -> Interaction:
    asked = Asked(
        "app-chat",
        Caller(None, "snapshot-test/1", "127.0.0.1"),
        prompt=f"user: {question}\nassistant:",
        messages=[{"role": "user", "content": question}],
    )
    return record(asked, "qig-constellation:latest", response, {"kernel": kernel}, "stop")


def learned() -> None:
    """Corrections and approvals worth keeping, one twice, with a name, an e-mail and a key."""
    get_user_model().objects.create_user(username="ada", first_name="Ada", password="x")
    rows: list[tuple[str, int | None, str, str, float]] = [
        ("What is a deque?", 5, "correction", "A double-ended queue.", 0.9),
        ("What is a deque?", 5, "correction", "A double-ended queue.", 0.95),
        (
            "Mail Ada?",
            5,
            "correction",
            "Write to ada@example.org, key sk-proj-Ab3dE5fG7hI9jK1lM3",
            0.9,
        ),
        ("2+2?", 7, "accepted", "", 0.8),
        ("Hello?", None, "correction", "Hello, how can I help?", 0.9),
        ("Unsure?", 7, "accepted", "", 0.6),  # a plain thumbs up: not high-value
    ]
    for question, kernel, kind, content, value in rows:
        item = answered(question, kernel, "4" if question == "2+2?" else "an answer")
        LearningSignal.objects.create(
            kind=kind, value=value, reason="test", interaction=item, kernel_index=kernel,
            content=content,
        )  # fmt: skip


def files(directory: Path) -> tuple[dict[str, Any], bytes]:
    return json.loads((directory / MANIFEST).read_text()), (directory / PATTERNS).read_bytes()


# ---- export -----------------------------------------------------------------------------------
def test_an_export_is_sorted_deduplicated_anonymised_and_stable(tmp_path: Path) -> None:
    learned()
    first = snapshots.export(tmp_path / "snaps")
    second = snapshots.export(tmp_path / "snaps")
    assert first is not None and second is not None
    assert first.version < second.version  # unique and sortable, within one second too
    manifest, body = files(first.path)
    assert body == files(second.path)[1]  # the same learnings, the same bytes
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["kernel"] for r in rows] == [5, 5, 7, None]
    assert [r["digest"] for r in rows[:2]] == sorted(r["digest"] for r in rows[:2])
    assert body.decode() == "".join(
        json.dumps(p.as_dict(), sort_keys=True, ensure_ascii=False) + "\n"
        for p in high_value_patterns()
    )
    assert [r["value"] for r in rows if r["completion"] == " A double-ended queue."] == [0.95]
    text = body.decode()
    assert "ada@example.org" not in text and "sk-proj-" not in text and "Ada" not in text
    assert " Write to <email>, key <secret>" in text and "Mail <user>?" in text
    assert manifest == {
        "format": 1,
        "version": first.version,
        "created_at": manifest["created_at"],
        "node": None,
        "count": 4,
        "files": {PATTERNS: {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}},
        "kernels": [5, 7],
    }
    assert not [p for p in (tmp_path / "snaps").iterdir() if p.name.startswith(".tmp-")]


def test_the_last_five_versions_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "snaps"
    made = [snapshots.export(root) for _ in range(7)]
    names = [m.version for m in made if m is not None]
    assert names == sorted(names) and len(set(names)) == 7
    assert [p.name for p in snapshots.versions(root)] == names[-5:]
    assert snapshots.resolve(root).name == names[-1]


def test_the_scheduled_export_writes_only_what_changed(tmp_path: Path, settings) -> None:
    settings.SNAPSHOT_DIR = tmp_path / "snaps"
    first = snapshot_tasks.export_snapshot()
    assert first is not None
    assert snapshot_tasks.export_snapshot() is None
    learned()
    later = snapshot_tasks.export_snapshot()
    assert later is not None and later > first
    assert [p.name for p in snapshots.versions(settings.SNAPSHOT_DIR)] == [first, later]


def test_beat_schedules_the_export_only_when_asked(tmp_path: Path) -> None:
    """The real configuration path of both modes: the app's imports, then beat's scheduler."""
    probe = (
        "import django; django.setup()\n"
        "from celery.beat import Scheduler\n"
        "from qigcenter.celery import app\n"
        "app.loader.import_default_modules()\n"
        "entry = Scheduler(app, lazy=False).schedule.get('snapshot-export')\n"
        "print(entry.task if entry else None, entry.schedule.run_every.total_seconds() "
        "if entry else None)\n"
    )
    said = []
    for every in ("0", "90"):
        env = dict(os.environ, QIG_DATA_DIR=str(tmp_path / "beat"), QIG_SNAPSHOT_EVERY_S=every)
        env.pop("DATABASE_URL", None), env.pop("REDIS_URL", None)
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        said.append(done.stdout.split())
    assert said == [["None", "None"], ["federation.snapshot_tasks.export_snapshot", "90.0"]]


# ---- import -----------------------------------------------------------------------------------
def test_export_then_a_fresh_node_imports_it_and_learns_it_through_gated_jobs(
    tmp_path: Path, settings
) -> None:
    learned()
    exported = snapshots.export(tmp_path / "snaps")
    assert exported is not None
    before = high_value_patterns()
    # A fresh node: its database emptied of what it learned, a new data dir with a model (the
    # command test below imports into a wiped data dir and database of its own).
    LearningSignal.objects.all().delete()
    Interaction.objects.all().delete()
    settings.DATA_DIR = tmp_path / "fresh"
    settings.MODELS_DIR = tmp_path / "fresh" / "models"
    settings.MEDIA_ROOT = str(tmp_path / "fresh" / "uploads")
    settings.DATA_DIR.mkdir()
    with_model(settings)
    assert high_value_patterns() == []

    imported = snapshot_import.import_snapshot(tmp_path / "snaps")
    assert high_value_patterns() == before
    assert (imported.version, imported.added, imported.skipped) == (exported.version, 4, 0)
    jobs = list(FineTuneJob.objects.filter(pk__in=imported.jobs).order_by("pk"))
    assert len(jobs) == 3  # kernels 5 and 7, and the one nearest the kernel-less pattern
    assert [j.target_kernels[0] for j in jobs[:2]] == [5, 7]
    for job in jobs:
        assert (job.kind, job.priority) == (JobKind.ADAPTER, LOOP_PRIORITY)
        assert job.hyperparameters["start"] == "served"
        [upload] = job.datasets.all()
        assert upload.original_name.startswith(f"snapshot-{exported.version}-kernel-")
    five = [json.loads(line) for line in jobs[0].datasets.get().file.read().decode().splitlines()]
    taught = sorted(p.completion for p in before if p.kernel == 5)
    # Each record once first, in `rotations`: 2 records, 2 orders (learning/improve.py).
    assert sorted(r["completion"] for r in five) == sorted(taught * len(taught))
    signal = LearningSignal.objects.filter(kernel_index=5).first()
    assert signal is not None and signal.user is None and signal.interaction is None
    assert signal.used_at is not None and signal.details["snapshot"] == exported.version
    assert imported.line() == f"snapshot {exported.version} imported: 4 patterns, 3 jobs queued"
    event = LearningEvent.objects.get(data__snapshot=exported.version)
    assert event.message == imported.line()
    expected = {"version": exported.version, "patterns": 4, "jobs": 3}
    assert {k: v for k, v in snapshots.last_import().items() if k != "imported_at"} == expected  # type: ignore[union-attr]
    assert history()["snapshot"] == snapshots.last_import()

    again = snapshot_import.import_snapshot(tmp_path / "snaps" / exported.version)
    assert (again.added, again.skipped, again.jobs) == (0, 4, [])
    assert LearningSignal.objects.count() == 4 and FineTuneJob.objects.count() == 3


def test_without_a_trunk_the_patterns_are_kept_and_learned_once_there_is_one(
    tmp_path: Path, settings
) -> None:
    root = tmp_path / "snaps"
    learned()
    exported = snapshots.export(root)
    assert exported is not None
    LearningSignal.objects.all().delete()
    settings.SNAPSHOT_DIR = root
    said = snapshot_import.at_start()
    assert said is not None and said.startswith(f"snapshot {exported.version} imported: 4 patterns")
    assert "0 jobs queued; no adapter job queued: this node has no trunk yet" in said
    assert LearningSignal.objects.count() == 4 and not FineTuneJob.objects.exists()
    with_model(settings)
    assert snapshot_import.at_start() == "snapshot patterns imported earlier: 3 jobs queued now"
    assert FineTuneJob.objects.count() == 3
    assert snapshots.last_import()["jobs"] == 3  # type: ignore[index]
    assert snapshot_import.at_start() is None  # a restart imports nothing again
    assert LearningSignal.objects.count() == 4 and FineTuneJob.objects.count() == 3


def test_the_start_up_import_happens_once_and_says_so(
    tmp_path: Path, settings, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "snaps"
    learned()
    snapshots.export(root)
    newest = snapshots.export(root)
    assert newest is not None
    LearningSignal.objects.all().delete()
    with_model(settings)
    snapshot_cli.at_start()  # QIG_SNAPSHOT_DIR unset: nothing
    assert capsys.readouterr().out == "" and not LearningSignal.objects.exists()
    settings.SNAPSHOT_DIR = root
    snapshot_cli.at_start()
    assert capsys.readouterr().out == (
        f"qig: snapshot {newest.version} imported: 4 patterns, 3 jobs queued\n"
    )
    assert json.loads((settings.DATA_DIR / "snapshots-imported.json").read_text())["version"] == (
        newest.version
    )
    snapshot_cli.at_start()
    assert capsys.readouterr().out == ""
    assert LearningSignal.objects.count() == 4 and FineTuneJob.objects.count() == 3


def _copy(source: Path, target: Path, change: Any) -> Path:
    shutil.copytree(source, target)
    change(target)
    return target


def _rewrite(directory: Path, lines: list[str], **manifest_changes: Any) -> None:
    """Replace the rows and make the manifest agree with them (hash, bytes), then apply
    `manifest_changes`: so only what the test breaks is wrong."""
    body = "".join(line + "\n" for line in lines).encode()
    (directory / PATTERNS).write_bytes(body)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"][PATTERNS] = {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    manifest["count"] = len(lines)
    manifest.update(manifest_changes)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_bad_snapshots_are_refused_with_their_reason_and_nothing_is_written(
    tmp_path: Path, settings
) -> None:
    learned()
    exported = snapshots.export(tmp_path / "snaps")
    assert exported is not None
    good = exported.path
    rows = (good / PATTERNS).read_text().splitlines()
    low = json.dumps({**json.loads(rows[0]), "value": 0.5})
    forged = json.dumps({**json.loads(rows[0]), "completion": " something else"})
    other = json.dumps(make(9, "correction", "p", " c", 0.9).as_dict())

    def manifest_set(**changes: Any) -> Any:
        def change(d: Path) -> None:
            m = json.loads((d / MANIFEST).read_text())
            m.update(changes)
            (d / MANIFEST).write_text(json.dumps(m))

        return change

    cases: list[tuple[Any, str]] = [
        (lambda d: (d / MANIFEST).unlink(), "holds no snapshot"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "not JSON"),
        (lambda d: (d / MANIFEST).write_text("[]"), "not a JSON object"),
        (manifest_set(format=2), "format 2 is not 1"),
        (manifest_set(version="yesterday"), "not a snapshot version"),
        (manifest_set(count=-1), "count -1"),
        (manifest_set(files={}), "needs its sha256 and bytes"),
        (lambda d: (d / PATTERNS).unlink(), "cannot be read"),
        (
            lambda d: (d / PATTERNS).write_bytes(
                (d / PATTERNS).read_bytes().replace(b"deque", b"deqeu")
            ),
            "sha256 does not match",
        ),
        (
            lambda d: (d / PATTERNS).write_bytes((d / PATTERNS).read_bytes() + b"\n"),
            "bytes, the manifest says",
        ),
        (lambda d: _rewrite(d, rows, count=3), "counts 3 patterns"),
        (lambda d: _rewrite(d, [*rows, other]), r"kernels \[5, 7\] are not those"),
        (lambda d: _rewrite(d, [low, *rows[1:]]), "line 1: value must be"),
        (lambda d: _rewrite(d, [*rows[:2], forged, *rows[3:]]), "line 3: digest"),
        (lambda d: _rewrite(d, [rows[0], *rows]), "line 2: digest .* repeated"),
        (lambda d: _rewrite(d, [*rows[:3], "{oops"]), "line 4: not JSON"),
        (lambda d: _rewrite(d, [*rows[:3], "[1, 2]"]), "line 4: a pattern must be a JSON object"),
    ]
    LearningSignal.objects.all().delete()
    for n, (change, said) in enumerate(cases):
        bad = _copy(good, tmp_path / "bad" / f"{n}" / exported.version, change)
        with pytest.raises(SnapshotError, match=said):
            snapshot_import.import_snapshot(bad)
    assert not LearningSignal.objects.exists() and not LearningEvent.objects.exists()
    assert not FineTuneJob.objects.exists()
    assert not (settings.DATA_DIR / "snapshots-imported.json").exists()
    assert snapshot_import.import_snapshot(good).added == 4  # the untouched one is fine


# ---- the command, as a process -----------------------------------------------------------------
def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    drop = ("DATABASE_URL", "REDIS_URL", "QIG_SECRET_KEY", "QIG_SNAPSHOT_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(QIG_DATA_DIR=str(data_dir), QIG_BOOTSTRAP="0", **extra)
    env["DJANGO_SETTINGS_MODULE"] = "qigcenter.settings"
    return env


def qig(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QIG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def test_the_command_restores_a_wiped_node_and_refuses_a_damaged_snapshot(tmp_path: Path) -> None:
    """This database's learnings exported; a node on a wiped data dir imports them with
    `qig snapshot import` and exports them back byte for byte; a damaged one exits 2."""
    learned()
    exported = snapshots.export(tmp_path / "snaps")
    assert exported is not None
    fresh = _env(tmp_path / "wiped")
    done = qig(fresh, "snapshot", "import", str(tmp_path / "snaps"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"qig: snapshot {exported.version} imported: 4 patterns, ")
    assert "no trunk yet" in done.stdout
    again = qig(fresh, "snapshot", "import", str(exported.path))
    assert again.returncode == 0 and "imported: 0 patterns" in again.stdout
    back = qig(fresh, "snapshot", "export", str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    [version] = snapshots.versions(tmp_path / "back")
    assert back.stdout.startswith(f"qig: snapshot {version.name} exported to {version}: 4 patterns")
    assert files(version)[1] == files(exported.path)[1]
    own = qig(fresh, "snapshot", "export")
    assert own.returncode == 0 and len(snapshots.versions(tmp_path / "wiped" / "snapshots")) == 1

    (exported.path / PATTERNS).write_text("tampered\n")
    other = _env(tmp_path / "other")
    refused = qig(other, "snapshot", "import", str(exported.path))
    assert refused.returncode == 2
    assert "qig snapshot import: error:" not in refused.stderr
    assert "qig: snapshot import: error: patterns.jsonl has 9 bytes" in refused.stderr
    empty = qig(other, "snapshot", "export", str(tmp_path / "empty"))
    assert empty.returncode == 0 and ": 0 patterns (kernels: none)" in empty.stdout
