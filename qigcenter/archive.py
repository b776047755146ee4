"""The backup archive (`qig backup`, `qig restore`; docs/operations.md, "Backup and restore"):
the one owner of its layout, both ways. Plain files, no Django: qigcenter/backup.py takes the
database and runs the commands.

    db/qig.sqlite3        embedded: the SQLite database (SQLite's online backup API)
    db/postgres.dump      services: `pg_dump -Fc`
    data/<OWNED path>     the files under the data dir that make the node itself
    manifest.json         last: created_at, mode, version, migrations, sha256 and size of each file

One uncompressed tar: one file to keep or copy, written under a temporary name and renamed when
complete; it keeps the models' symbolic links and the keys' 0600 modes, and `tar tf` reads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = 1
MANIFEST = "manifest.json"
# What a restored node needs to be the same node, relative to the data dir: its secret key
# (sessions, API tokens' signatures), the admin password file, its federation keys, uploads,
# training checkpoints and published models. The rest is regenerated or transient: static/
# (collectstatic), celery-results/, the beat schedule, logs, and the database files themselves
# (taken through the database, never as bytes).
OWNED = ("secret_key", "admin_password", "federation", "uploads", "checkpoints", "models")
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


def _skipped(relative: PurePosixPath) -> bool:
    """Files being written right now: uploads still arriving, temporaries renamed into place
    when complete, the link `published._point` is about to swap in."""
    name = relative.name
    return (
        ".incoming" in relative.parts
        or name.endswith((".tmp", ".part", ".link"))
        or name.startswith(".tmp")
    )


def owned_files(data_dir: Path) -> Iterator[tuple[PurePosixPath, Path]]:
    """(path in the archive, path on disk) of every file and symbolic link the node owns."""
    for name in OWNED:
        top = data_dir / name
        if top.is_file():
            yield PurePosixPath("data", name), top
            continue
        for root, dirs, files in os.walk(top):  # links below are archived as links
            dirs.sort()
            here = Path(root)
            links = [d for d in dirs if (here / d).is_symlink()]
            for entry in sorted(files + links):
                relative = PurePosixPath("data", *(here / entry).relative_to(data_dir).parts)
                if not _skipped(relative):
                    yield relative, here / entry


def present(data_dir: Path) -> str:
    """The owned paths that exist under `data_dir`, for a progress line."""
    return ", ".join(name for name in OWNED if (data_dir / name).exists()) or "none"


class _Hashing(io.RawIOBase):
    """A reader that hashes what it hands on (tarfile reads exactly the member's size)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.sha = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha.update(data)
        return data


def add(tar: tarfile.TarFile, arcname: PurePosixPath, path: Path) -> dict[str, Any] | None:
    """Add one file or link; its manifest entry (None: it was removed while we walked)."""
    try:
        if path.is_symlink():
            info = tarfile.TarInfo(str(arcname))
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            info.mtime = int(path.lstat().st_mtime)
            tar.addfile(info)
            return {"path": str(arcname), "link": info.linkname}
        with path.open("rb") as handle:  # the open inode: a file replaced meanwhile stays whole
            info = tar.gettarinfo(arcname=str(arcname), fileobj=handle)
            reader = _Hashing(handle)
            tar.addfile(info, reader)
    except FileNotFoundError:
        return None
    return {"path": str(arcname), "sha256": reader.sha.hexdigest(), "size": info.size}


def add_manifest(tar: tarfile.TarFile, manifest: dict[str, Any], mtime: float) -> None:
    body = json.dumps({"format": FORMAT, **manifest}, indent=1).encode()
    info = tarfile.TarInfo(MANIFEST)
    info.size, info.mtime = len(body), int(mtime)
    tar.addfile(info, io.BytesIO(body))


def safe(name: str) -> PurePosixPath:
    """A member's path, refused unless this format writes such a path (no `..`, no absolute)."""
    path = PurePosixPath(name)
    allowed = (
        not path.is_absolute()
        and ".." not in path.parts
        and (
            path.parts[:1] == ("db",)
            or (len(path.parts) >= 2 and path.parts[0] == "data" and path.parts[1] in OWNED)
        )
    )
    if not allowed:
        raise BackupError(f"refusing {name!r}: not a path this archive format writes")
    return path


def verify(src: Path) -> dict[str, Any]:
    """The manifest, once every file's size and sha256 match it and nothing is missing or extra.
    Reads the archive, writes nothing."""
    if not src.is_file():
        raise BackupError(f"{src}: no such file")
    try:
        with tarfile.open(src, "r:") as tar:
            handle = tar.extractfile(tar.getmember(MANIFEST))
            assert handle is not None, "the manifest is a regular file"
            manifest: dict[str, Any] = json.loads(handle.read())
            if manifest.get("format") != FORMAT:
                raise BackupError(f"{src}: unknown backup format {manifest.get('format')!r}")
            expected = {entry["path"]: entry for entry in manifest["files"]}
            seen: set[str] = set()
            for member in tar:
                if member.name == MANIFEST:
                    continue
                entry = expected.get(member.name)
                if entry is None or member.name in seen:
                    raise BackupError(f"{src}: {member.name} is not in the manifest")
                seen.add(member.name)
                _check(tar, member, entry, src)
    except (tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(f"{src} is not a readable qig backup: {exc}") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{src}: {missing[0]} is in the manifest but not in the archive")
    return manifest


def _check(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: dict[str, Any], src: Path) -> None:
    path = safe(member.name)
    if "link" in entry:
        target = PurePosixPath(member.linkname)
        if not member.issym() or member.linkname != entry["link"]:
            raise BackupError(f"{src}: {path} does not match the manifest (a link)")
        if target.is_absolute() or ".." in target.parts:
            raise BackupError(f"refusing {path}: it links outside its directory")
        return
    handle = tar.extractfile(member) if member.isfile() else None
    if handle is None:
        raise BackupError(f"{src}: {path} is not a regular file")
    sha = hashlib.sha256()
    while chunk := handle.read(CHUNK):
        sha.update(chunk)
    if member.size != entry["size"] or sha.hexdigest() != entry["sha256"]:
        raise BackupError(
            f"{src}: {path} is damaged or was changed (its sha256 or size does not match the "
            "manifest); nothing was restored"
        )


def extract(src: Path, stage: Path, manifest: dict[str, Any]) -> None:
    """Write every member under `stage` (which must not exist), hashing the bytes written."""
    expected = {entry["path"]: entry.get("sha256") for entry in manifest["files"]}
    with tarfile.open(src, "r:") as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            target = stage / safe(member.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.issym():
                target.symlink_to(member.linkname)
                continue
            handle = tar.extractfile(member)
            assert handle is not None, "verify() checked it is a regular file"
            sha = hashlib.sha256()
            mode = member.mode & 0o777 or 0o600
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as out:
                while chunk := handle.read(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if sha.hexdigest() != expected.get(member.name):
                raise BackupError(f"{member.name} changed while it was extracted from {src}")
