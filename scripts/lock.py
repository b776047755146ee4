"""requirements.lock: every Python package of `make install`, pinned with its hashes.

    python scripts/lock.py            regenerate it with pip-compile (`make lock`)
    python scripts/lock.py --check    fail when pyproject.toml's dependencies changed since

The lock is pip-compile's output (the dependencies and the `dev` extra, pip's own resolver and
configuration, so torch 2.13.0 resolves to the CPU wheel of the machine's find-links) with one more
header line: the sha256 of pyproject.toml's dependency lists as they were. `--check` recomputes it
from pyproject.toml with the standard library alone, offline, in milliseconds. docs/testing.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
EXTRAS = ("dev",)
MARK = "# pyproject.toml dependencies sha256: "


def dependencies_digest(pyproject: Path = PYPROJECT) -> str:
    """The sha256 of what the lock is resolved from: the dependencies and the locked extras, as
    parsed (a comment or a reformatting in pyproject.toml changes nothing)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    locked = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": project.get("dependencies", []),
        **{f"extra:{name}": extras.get(name, []) for name in EXTRAS},
    }
    return hashlib.sha256(json.dumps(locked, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    if not lock.is_file():
        return None
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(MARK):
            return line.removeprefix(MARK).strip()
    return None


def check() -> int:
    recorded, current = recorded_digest(), dependencies_digest()
    if recorded == current:
        print(f"lock: {LOCK.name} matches pyproject.toml's dependencies")
        return 0
    why = "is missing" if recorded is None else "is stale: pyproject.toml's dependencies changed"
    print(f"lock: {LOCK.name} {why}; run `make lock` and commit it", file=sys.stderr)
    return 1


def generate(extra_args: list[str]) -> int:
    """pip-compile into the lock (keeping its current pins where they still fit, unless
    `extra_args` says --upgrade or --upgrade-package), then record the digest."""
    command = [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",  # pip and setuptools are pinned too: the install needs no others
        # extras kept (`cachecontrol[filecache]==…`): a fresh venv's pip (23.2 on Python 3.11)
        # in --require-hashes mode refuses a dependency asked for with an extra unless the lock
        # pins it with that extra (it resolved pip-audit's CacheControl[filecache] to a newer
        # release than the lock's and stopped)
        "--no-strip-extras",
        *[f"--extra={name}" for name in EXTRAS],
        # The indexes and find-links come from pip's configuration, not from the lock.
        "--no-emit-index-url",
        "--no-emit-find-links",
        f"--output-file={LOCK.relative_to(ROOT)}",
        *extra_args,
        "pyproject.toml",
    ]
    env = dict(os.environ, CUSTOM_COMPILE_COMMAND="make lock")
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        return done.returncode
    text = LOCK.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith(MARK)]
    # After pip-compile's header (its first block of comments).
    at = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    lines.insert(at, MARK + dependencies_digest())
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return check()


def main(args: list[str]) -> int:
    """`--check`, or pip-compile's own options to pass on (`make lock LOCK_ARGS=--upgrade`)."""
    if args == ["--check"]:
        return check()
    return generate(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
