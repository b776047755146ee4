"""Pattern-based anonymisation of learning text before it leaves a node (sleep packets, snapshots;
docs/snapshots.md "What is anonymised"). Pure: no Django.

`anonymise(text, names)` replaces, in this order:

- PEM private key blocks → `<secret>`;
- the credentials of a URL (`scheme://user:pass@host`, `scheme://user@host`) →
  `scheme://<credentials>@host` (the rest of the URL is kept);
- e-mail addresses → `<email>`;
- API keys and tokens of known shapes (OpenAI, GitHub, Slack, AWS, Google, Stripe, JWTs, this
  product's `qig_…` keys and `qigjoin_…` join tokens), `Bearer …` / `Authorization: …` values and
  the value of `password=` / `passwd:` / `api_key=` / `token:` / `secret=` / `…_secret_access_key =`
  assignments → `<secret>`;
- IPv6 and IPv4 addresses → `<ip>`;
- generic random-looking strings (≥ 32 characters of letters and digits mixed, or ≥ 32 hex
  digits) → `<secret>`;
- each of `names` as a whole word (case-insensitive; names shorter than 2 characters are
  skipped) and `@handle` mentions → `<user>`.

It is deterministic and idempotent (no placeholder matches any rule). It is pattern matching:
a secret or a name of a shape it does not know passes through (docs/snapshots.md).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from itertools import pairwise

EMAIL, IP, CREDENTIALS, SECRET, USER = "<email>", "<ip>", "<credentials>", "<secret>", "<user>"

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)"
)
# The userinfo part of a URL (everything between "scheme://" and the host's "@").
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@<>?#]+@")
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)
_B = r"(?<![A-Za-z0-9_\-])"  # no token character before
_E = r"(?![A-Za-z0-9_\-])"  # none after
_TOKENS = re.compile(
    "|".join(
        f"{_B}{body}{_E}"
        for body in (
            r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",  # OpenAI (and Anthropic)
            r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
            r"github_pat_[A-Za-z0-9_]{20,}",
            r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
            r"(?:AKIA|ASIA)[A-Z0-9]{16}",  # AWS access key ids
            r"AIza[0-9A-Za-z_\-]{30,}",  # Google
            r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe
            r"eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*",  # JWT
            r"qigjoin_[A-Za-z0-9_\-]{16,}",  # this product's join tokens
            r"qig_[A-Za-z0-9_\-]{16,}",  # this product's API keys
        )
    )
)
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization\s*:\s*(?:(?:bearer|basic|token|digest)\s+)?)"
    r"(?!(?:bearer|basic|token|digest)\b)[^\s\"'<>]{6,}"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
# `password=…`, `DB_PASSWORD: …`, `"api_key": "…"`: the key must end with one of these words.
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z0-9_.\-]*?"
    r"(?:password|passwd|passphrase|pwd|api[_\-]?key|access[_\-]?key|secret[_\-]?key|secret"
    r"|token|credentials?)"
    r"[\"']?\s*[:=]\s*)"
    r"(?:\"([^\"\n]*)\"|'([^'\n]*)'|([^\s\"'<>,;)\]}]{3,}))"
)
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?:%[\w.]+)?")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
_LONG = re.compile(r"(?<![A-Za-z0-9_+\-])[A-Za-z0-9_+\-]{32,}={0,2}(?![A-Za-z0-9_+=\-])")
_HANDLE = re.compile(r"(?<![^\s(\[{\"'`,;])@[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?")
_DECORATOR_LINE = re.compile(r"^[ \t]*@[\w.]+(?:\(.*\))?[ \t]*$", re.MULTILINE)


def anonymise(text: str, names: Iterable[str] = ()) -> str:
    """`text` with the personal and secret values described above replaced by placeholders."""
    text = _PEM.sub(SECRET, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{CREDENTIALS}@", text)
    text = _EMAIL.sub(EMAIL, text)
    text = _TOKENS.sub(SECRET, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + SECRET, text)
    text = _BEARER.sub(lambda m: m.group(1) + SECRET, text)
    text = _ASSIGNMENT.sub(_assignment, text)
    text = _IPV6_CANDIDATE.sub(_ipv6, text)
    text = _IPV4.sub(IP, text)
    text = _LONG.sub(lambda m: SECRET if _random_looking(m.group(0)) else m.group(0), text)
    text = _names(text, names)
    return _handles(text)


def _assignment(m: re.Match[str]) -> str:
    if m.group(2) is not None:
        return f'{m.group(1)}"{SECRET if m.group(2) else ""}"'
    if m.group(3) is not None:
        return f"{m.group(1)}'{SECRET if m.group(3) else ''}'"
    return m.group(1) + SECRET


def _ipv6(m: re.Match[str]) -> str:
    """An IPv6 address (a candidate's trailing ':' or '.' is punctuation, not part of it)."""
    found = m.group(0)
    core = found.rstrip(":.")
    if not any(c in "0123456789abcdefABCDEF" for c in core.split("%")[0]):
        return found
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        return found
    return IP + found[len(core) :]


def _random_looking(run: str) -> bool:
    """≥ 32 hex digits, or letters and digits mixed (the kinds alternate at least 4 times), so
    that a long identifier such as `snake_case_name_with_version_2` is kept."""
    bare = run.rstrip("=")
    if sum(c in "0123456789abcdefABCDEF" for c in bare) >= 32 and all(
        c in "0123456789abcdefABCDEF-" for c in bare
    ):
        return True
    alnum = [c for c in bare if c.isalnum()]
    digits = sum(c.isdigit() for c in alnum)
    if digits < 2 or len(alnum) - digits < 2:
        return False
    changes = sum(a.isdigit() != b.isdigit() for a, b in pairwise(alnum))
    return changes >= 4


def _names(text: str, names: Iterable[str]) -> str:
    wanted = sorted({n.strip() for n in names if len(n.strip()) >= 2}, key=lambda n: (-len(n), n))
    if not wanted:
        return text
    words = "|".join(re.escape(n) for n in wanted)
    return re.sub(rf"(?i)(?<![\w<@])(?:{words})(?![\w>])", USER, text)


def _handles(text: str) -> str:
    """`@handle` → `<user>`, except a line that is only a decorator (`@property`, `@app.get(…)`)."""
    keep = [m.span() for m in _DECORATOR_LINE.finditer(text)]

    def handle(m: re.Match[str]) -> str:
        inside = any(start <= m.start() < end for start, end in keep)
        return m.group(0) if inside else USER

    return _HANDLE.sub(handle, text)
