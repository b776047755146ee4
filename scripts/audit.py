"""`make audit`: known vulnerabilities in the locked Python packages and the frontend's npm tree.

    python scripts/audit.py [python] [npm]       both when neither is named

- Python: pip-audit on every pin of requirements.lock (`--no-deps`: the lock is the whole tree,
  nothing is installed or resolved), asking PyPI's vulnerability service. Any finding fails:
  that service gives no severity to filter on.
- npm: `npm audit` in frontend/, production and dev dependencies (dev tools run on every
  developer's machine and in CI), failing on `high` and `critical`; lower ones are listed.

An advisory that is reviewed and accepted goes in scripts/audit-allow.txt: its id (any of the
ids or aliases the tool reports: GHSA-…, PYSEC-…, CVE-…), the review date and the reason.

A service that does not answer is asked again (AUDIT_TRIES times, default 3, each try within
AUDIT_TIMEOUT_S, default 60 s, each request within 15 s, a growing pause between); when it still
has not answered, or refused (an HTTP 4xx: asking again changes nothing), the audit says so loudly
and passes, unless AUDIT_REQUIRE_SERVICE=1: a slow network does not fail a test run, a finding
always does. docs/testing.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
FRONTEND = ROOT / "frontend"
ALLOW = ROOT / "scripts" / "audit-allow.txt"
NPM_FAILING = ("high", "critical")
REVIEW_EVERY = timedelta(days=180)
REQUEST_TIMEOUT_S = 15
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


class Unavailable(Exception):
    """The vulnerability service gave no answer (network, timeout): worth asking again."""


class Refused(Unavailable):
    """The service answered that it will not tell (an HTTP 4xx, no record of any pin): asking
    again gives the same answer."""


@dataclass(frozen=True)
class Finding:
    package: str  # name==version
    ids: tuple[str, ...]  # the advisory's id first, then its aliases
    severity: str
    summary: str

    def __str__(self) -> str:
        return f"{self.package}: {' / '.join(self.ids)} [{self.severity}] {self.summary}"[:300]


@dataclass(frozen=True)
class Allowed:
    id: str
    reviewed: date
    reason: str


def read_allow_list(path: Path) -> dict[str, Allowed]:
    """`ID  YYYY-MM-DD  reason` a line; `#` comments. A malformed line stops the audit."""
    allowed: dict[str, Allowed] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        try:
            reviewed = date.fromisoformat(parts[1] if len(parts) == 3 else "")
        except ValueError as exc:
            raise SystemExit(
                f"audit: {path.name}:{number}: expected `ID YYYY-MM-DD reason`, found {raw!r}"
            ) from exc
        allowed[parts[0].upper()] = Allowed(parts[0].upper(), reviewed, parts[2])
    return allowed


def run(command: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"no answer within {timeout_s:.0f} s") from exc


def python_findings(timeout_s: float) -> tuple[list[Finding], str]:
    """pip-audit on the lock's pins; raises Unavailable when PyPI answered for none of them."""
    pins = []
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if match := PIN.match(line):
            # A local build (torch 2.13.0+cpu) has the advisories of its public release.
            pins.append(f"{match[1]}=={match[2].split('+', 1)[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        requirements, report = Path(tmp) / "pins.txt", Path(tmp) / "report.json"
        requirements.write_text("\n".join(pins) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip_audit", "--requirement", str(requirements)]
        command += ["--no-deps", "--disable-pip", "--vulnerability-service", "pypi"]
        command += ["--timeout", str(REQUEST_TIMEOUT_S), "--progress-spinner", "off"]
        command += ["--format", "json", "--output", str(report)]
        done = run(command, ROOT, timeout_s)
        if not report.is_file():  # pip-audit stopped before reporting: the service failed
            raise Unavailable(done.stderr.strip().splitlines()[-1:] or f"exit {done.returncode}")
        dependencies = json.loads(report.read_text(encoding="utf-8"))["dependencies"]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    if skipped and len(skipped) == len(dependencies):
        why = skipped[0]["skip_reason"]
        raise Refused(f"PyPI answered for none of the {len(pins)} pins (first: {why})")
    findings = [
        Finding(
            f"{d['name']}=={d['version']}",
            (v["id"], *v.get("aliases", [])),
            "-",
            f"fixed in {', '.join(v.get('fix_versions', [])) or 'no release yet'}",
        )
        for d in dependencies
        for v in d.get("vulns", [])
    ]
    note = f"{len(dependencies) - len(skipped)} of {len(pins)} pins audited"
    if skipped:
        note += f"; not on PyPI: {', '.join(d['name'] for d in skipped)}"
    return findings, note


def npm_findings(timeout_s: float) -> tuple[list[Finding], str]:
    """`npm audit` of frontend/'s lock, production and dev dependencies."""
    ms = str(REQUEST_TIMEOUT_S * 1000)
    command = ["npm", "audit", "--json", "--fetch-timeout", ms, "--fetch-retries", "1"]
    done = run(command, FRONTEND, timeout_s)
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise Unavailable(f"npm audit printed no JSON (exit {done.returncode})") from exc
    if "error" in answer:
        lines = done.stderr.strip().splitlines()
        why = next((x for x in lines if " audit " in x), "npm audit failed")
        raise (Refused if re.search(r"\b4\d\d [A-Z]", why) else Unavailable)(why)
    advisories: dict[str, Finding] = {}
    for package in answer.get("vulnerabilities", {}).values():
        for via in package.get("via", []):
            if isinstance(via, dict):  # a string names the dependency it comes through
                ids = (str(via.get("url", "")).rsplit("/", 1)[-1] or str(via["source"]),)
                pkg = f"{via.get('name')}@{via.get('range')}"
                advisories[ids[0]] = Finding(pkg, ids, via.get("severity", "?"), via["title"])
    counts = answer.get("metadata", {}).get("vulnerabilities", {})
    note = ", ".join(f"{n} {level}" for level, n in counts.items() if n and level != "total")
    return list(advisories.values()), f"{len(advisories)} advisories ({note or 'none'})"


Audit = Callable[[float], tuple[list[Finding], str]]


def with_retries(
    name: str, audit: Audit, tries: int, timeout_s: float
) -> tuple[list[Finding], str]:
    for attempt in range(1, tries + 1):
        try:
            return audit(timeout_s)
        except Refused as exc:
            raise Refused(f"{name}: the vulnerability service refused: {exc}") from exc
        except Unavailable as exc:
            print(f"audit: {name}: try {attempt}/{tries}: no answer: {exc}", file=sys.stderr)
            if attempt < tries:
                time.sleep(5 * attempt)
    raise Unavailable(f"{name}: the vulnerability service did not answer in {tries} tries")


def main(which: list[str]) -> int:
    allowed = read_allow_list(ALLOW)
    tries = int(os.environ.get("AUDIT_TRIES", "3"))
    timeout_s = float(os.environ.get("AUDIT_TIMEOUT_S", "60"))
    require = os.environ.get("AUDIT_REQUIRE_SERVICE", "") == "1"
    audits: dict[str, Audit] = {"python": python_findings, "npm": npm_findings}
    if unknown := set(which) - set(audits):
        raise SystemExit(f"audit: unknown {sorted(unknown)}: name python, npm or neither")
    failing: list[Finding] = []
    unanswered = []
    used: set[str] = set()
    for name in which or list(audits):
        try:
            findings, note = with_retries(name, audits[name], tries, timeout_s)
        except Unavailable as exc:
            unanswered.append(str(exc))
            continue
        print(f"audit: {name}: {note}")
        for finding in findings:
            accepted = [allowed[i.upper()] for i in finding.ids if i.upper() in allowed]
            used.update(a.id for a in accepted)
            if accepted:
                print(f"audit: {name}: allowed ({accepted[0].reason}): {finding}")
            elif name == "python" or finding.severity in NPM_FAILING:
                failing.append(finding)
                print(f"audit: {name}: FAILS: {finding}", file=sys.stderr)
            else:
                print(f"audit: {name}: below {NPM_FAILING[0]}: {finding}")
    for entry in allowed.values():
        if date.today() - entry.reviewed > REVIEW_EVERY:
            print(f"audit: {ALLOW.name}: {entry.id} was reviewed on {entry.reviewed}: review again")
        if entry.id not in used and not unanswered:
            print(f"audit: {ALLOW.name}: {entry.id} matched no finding: remove it?")
    for message in unanswered:
        print(f"audit: WARNING: NOT CHECKED: {message}", file=sys.stderr)
    if failing:
        print(f"audit: {len(failing)} finding(s) to fix or allow in {ALLOW.name}", file=sys.stderr)
        return 1
    return 1 if unanswered and require else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
