"""Snapshots: a node's high-value patterns as versioned, git-friendly files that survive a
reinstall (docs/snapshots.md).

    <root>/<version>/patterns.jsonl   one `Pattern.as_dict()` a line, in `high_value_patterns()`
                                      order: the same learnings give the same bytes
    <root>/<version>/manifest.json    format, version, created_at, node, count, files (sha256 and
                                      bytes of patterns.jsonl), kernels

A version is a UTC stamp (`20261207T174500Z`, `-01`, `-02`… when two fall in one second), so
the names sort in time order; the last `KEEP` versions are kept. Importing checks everything
before writing anything; each new pattern becomes a `LearningSignal` and the node learns them
through the learning loop's gated adapter jobs (`learning.improve`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from federation.patterns import Pattern, high_value_patterns

FORMAT = 1
KEEP = 5
PATTERNS, MANIFEST = "patterns.jsonl", "manifest.json"
MARKER = "snapshots-imported.json"  # under the data dir: the last snapshot imported
MAX_PATTERNS_BYTES = 256 * 2**20
MAX_MANIFEST_BYTES = 2**20
VERSION = re.compile(r"^\d{8}T\d{6}Z(?:-\d{2,})?$")


class SnapshotError(ValueError):
    """A snapshot that cannot be written or read; the message says why."""


@dataclass
class Exported:
    version: str
    path: Path
    count: int
    kernels: list[int]


@dataclass
class Imported:
    version: str
    added: int
    skipped: int
    jobs: list[int] = field(default_factory=list)
    why_no_jobs: str = ""

    def line(self) -> str:
        """`snapshot V imported: N patterns, K jobs queued` (and why none, when none could be)."""
        said = (
            f"snapshot {self.version} imported: {self.added} patterns, {len(self.jobs)} jobs queued"
        )
        if self.skipped:
            said += f" ({self.skipped} already on this node)"
        return f"{said}; {self.why_no_jobs}" if self.why_no_jobs else said


# ---- where ------------------------------------------------------------------------------------
def default_dir() -> Path:
    """`QIG_SNAPSHOT_DIR`, else `<data dir>/snapshots`."""
    return Path(settings.SNAPSHOT_DIR or Path(settings.DATA_DIR) / "snapshots")


def versions(root: Path) -> list[Path]:
    """The snapshot versions under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if VERSION.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def resolve(directory: Path) -> Path:
    """A version directory as given, or the newest version under a snapshots directory."""
    if (directory / MANIFEST).is_file():
        return directory
    found = versions(directory)
    if not found:
        where = "does not exist" if not directory.exists() else "holds no snapshot"
        raise SnapshotError(f"{directory} {where} (no {MANIFEST} in it or in a version under it)")
    return found[-1]


# ---- export -----------------------------------------------------------------------------------
def body_of(patterns: list[Pattern]) -> bytes:
    lines = (json.dumps(p.as_dict(), sort_keys=True, ensure_ascii=False) + "\n" for p in patterns)
    return "".join(lines).encode("utf-8")


def export(root: Path | None = None, *, unless_unchanged: bool = False) -> Exported | None:
    """Write a new version under `root` (default `default_dir()`) and keep the last `KEEP`.
    `unless_unchanged`: write nothing (None) when the newest version holds the same patterns."""
    root = root if root is not None else default_dir()
    if root.exists() and not root.is_dir():
        raise SnapshotError(f"{root} is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    patterns = high_value_patterns()
    body = body_of(patterns)
    digest = hashlib.sha256(body).hexdigest()
    if unless_unchanged and (held := versions(root)):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            manifest = json.loads((held[-1] / MANIFEST).read_text(encoding="utf-8"))
            if manifest["files"][PATTERNS]["sha256"] == digest:
                return None
    now = datetime.now(UTC).replace(microsecond=0)
    kernels = sorted({p.kernel for p in patterns if p.kernel is not None})
    manifest = {
        "format": FORMAT,
        "version": "",
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "node": _node(),
        "count": len(patterns),
        "files": {PATTERNS: {"sha256": digest, "bytes": len(body)}},
        "kernels": kernels,
    }
    staging = root / f".tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        _write(staging / PATTERNS, body)
        # After the newest version, even one of the same second or a clock set back.
        newest = held[-1].name if (held := versions(root)) else ""
        stamp = max(now.strftime("%Y%m%dT%H%M%SZ"), newest[:16])
        for n in range(100):
            version = stamp if n == 0 else f"{stamp}-{n:02d}"
            if version <= newest or (root / version).exists():
                continue
            manifest["version"] = version
            text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            _write(staging / MANIFEST, text.encode("utf-8"))
            try:
                os.rename(staging, root / version)  # atomic: the version appears whole
            except OSError:
                continue  # another export took this name meanwhile
            break
        else:
            raise SnapshotError(f"no free version name under {root} for {stamp}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _prune(root)
    return Exported(version, root / version, len(patterns), kernels)


def _node() -> dict[str, str] | None:
    if not settings.FEDERATION:
        return None
    name = "central"
    if settings.FEDERATION == "edge":
        from federation.models import EdgeState

        state = EdgeState.objects.filter(pk=1).first()
        name = state.name if state is not None and state.name else ""
    return {"role": settings.FEDERATION, "name": name}


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _prune(root: Path) -> None:
    """Keep the newest `KEEP` versions; drop staging left by an export that was killed."""
    for old in versions(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for staging in root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - staging.stat().st_mtime > 3600:
                shutil.rmtree(staging, ignore_errors=True)


# ---- read -------------------------------------------------------------------------------------
def read(directory: Path) -> tuple[dict[str, Any], list[Pattern]]:
    """A snapshot version's manifest and patterns, every one checked; `SnapshotError` says the
    first thing wrong."""
    manifest = _manifest(directory)
    path = directory / PATTERNS
    declared = manifest["files"][PATTERNS]
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SnapshotError(f"{PATTERNS}: cannot be read: {exc.strerror or exc}") from None
    if size != declared["bytes"]:
        raise SnapshotError(f"{PATTERNS} has {size} bytes, the manifest says {declared['bytes']}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != declared["sha256"]:
        raise SnapshotError(f"{PATTERNS}: sha256 does not match the manifest (changed or damaged)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{PATTERNS}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if text and not text.endswith("\n"):
        raise SnapshotError(f"{PATTERNS}: the last line does not end with a newline")
    patterns: list[Pattern] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        try:
            pattern = Pattern.from_dict(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{PATTERNS} line {number}: not JSON ({exc.msg})") from None
        except ValueError as exc:
            raise SnapshotError(f"{PATTERNS} line {number}: {exc}") from None
        if pattern.digest in seen:
            raise SnapshotError(f"{PATTERNS} line {number}: digest {pattern.digest} repeated")
        seen.add(pattern.digest)
        patterns.append(pattern)
    if len(patterns) != manifest["count"]:
        raise SnapshotError(
            f"the manifest counts {manifest['count']} patterns, {PATTERNS} has {len(patterns)}"
        )
    kernels = sorted({p.kernel for p in patterns if p.kernel is not None})
    if manifest["kernels"] != kernels:
        raise SnapshotError(
            f"the manifest's kernels {manifest['kernels']} are not those of its patterns {kernels}"
        )
    return manifest, patterns


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise SnapshotError(f"{MANIFEST}: larger than {MAX_MANIFEST_BYTES} bytes")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{MANIFEST}: not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise SnapshotError(f"{MANIFEST}: not a JSON object")
    if manifest.get("format") != FORMAT:
        raise SnapshotError(
            f"{MANIFEST}: format {manifest.get('format')!r} is not {FORMAT}, "
            "the one this version reads"
        )
    version, count, kernels = (
        manifest.get("version"),
        manifest.get("count"),
        manifest.get("kernels"),
    )
    if not isinstance(version, str) or not VERSION.match(version):
        raise SnapshotError(
            f"{MANIFEST}: version {version!r} is not a snapshot version (like 20261207T174500Z)"
        )
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise SnapshotError(f"{MANIFEST}: count {count!r} is not a number of patterns")
    if not isinstance(kernels, list):
        raise SnapshotError(f"{MANIFEST}: kernels must be a list")
    entry = (
        manifest.get("files", {}).get(PATTERNS) if isinstance(manifest.get("files"), dict) else None
    )
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("sha256"), str)
        or not isinstance(entry.get("bytes"), int)
        or not 0 <= entry["bytes"] <= MAX_PATTERNS_BYTES
    ):
        raise SnapshotError(
            f"{MANIFEST}: files.{PATTERNS} needs its sha256 and bytes (≤ {MAX_PATTERNS_BYTES})"
        )
    return manifest


# ---- the marker: the last snapshot imported -----------------------------------------------------
def marker_path() -> Path:
    return Path(settings.DATA_DIR) / MARKER


def last_import() -> dict[str, Any] | None:
    """The last snapshot this node imported, as the dashboard shows it ({version, imported_at,
    patterns, jobs}), or None."""
    try:
        held = json.loads(marker_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(held, dict):
        return None
    return {k: held.get(k) for k in ("version", "imported_at", "patterns", "jobs")}


def remember(imported: Imported) -> None:
    """Write the marker (atomically: a temp file renamed into place)."""
    path = marker_path()
    held = {
        "version": imported.version,
        "imported_at": timezone.now().isoformat(),
        "patterns": imported.added,
        "skipped": imported.skipped,
        "jobs": len(imported.jobs),
        "why_no_jobs": imported.why_no_jobs,
    }
    tmp = path.with_name(f".{MARKER}.{os.getpid()}.tmp")
    _write(tmp, (json.dumps(held, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    os.replace(tmp, path)


def add_jobs_to_marker(count: int) -> None:
    """Jobs queued later for a snapshot's patterns (`queue_pending`) count with its import."""
    path = marker_path()
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        held["jobs"] = int(held.get("jobs") or 0) + count
        held["why_no_jobs"] = ""
    except (OSError, ValueError, TypeError, AttributeError):
        return
    tmp = path.with_name(f".{MARKER}.{os.getpid()}.tmp")
    _write(tmp, (json.dumps(held, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    os.replace(tmp, path)
