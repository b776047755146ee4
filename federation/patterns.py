"""A node's high-value learnings as anonymised prompt → completion patterns: what it sends in
its sleep packets and writes to its snapshots (docs/snapshots.md).

A pattern is a learning signal of value ≥ `HIGH_VALUE` that teaches something: a correction or
an approved answer, taken exactly as the learning loop trains on it (`learning.records.record_of`:
the prompt the model saw and " " + the taught text). A signal imported from a snapshot has no
interaction: its prompt is in `details["prompt"]` and its completion in `content`. Both sides go
through `federation.anonymise` with the names of the node's users. Signals without a prompt (their
conversation was deleted), and those whose prompt or completion is longer than a pattern may be,
are left out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from federation.anonymise import anonymise

HIGH_VALUE = 0.7
KINDS = ("correction", "accepted")
MAX_KERNEL = 239
MAX_PROMPT_CHARS = 8000
MAX_COMPLETION_CHARS = 4000
FIELDS = ("kernel", "kind", "prompt", "completion", "value", "digest")


def digest_of(kernel: int | None, prompt: str, completion: str) -> str:
    """First 32 hex digits of the sha256 of the canonical JSON `[kernel, prompt, completion]`
    (UTF-8, no spaces, non-ASCII kept as is)."""
    body = json.dumps([kernel, prompt, completion], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Pattern:
    kernel: int | None
    kind: str
    prompt: str
    completion: str
    value: float
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Pattern:
        """A pattern from its dict, checked strictly; `ValueError` names what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"a pattern must be a JSON object, not {type(d).__name__}")
        keys = set(d)
        if keys != set(FIELDS):
            missing, extra = sorted(set(FIELDS) - keys), sorted(keys - set(FIELDS))
            said = [f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(map(str, extra))}" if extra else ""]  # fmt: skip
            raise ValueError(
                f"a pattern has exactly {', '.join(FIELDS)}: {'; '.join(s for s in said if s)}"
            )
        kernel, kind, prompt, completion = d["kernel"], d["kind"], d["prompt"], d["completion"]
        value, digest = d["value"], d["digest"]
        if kernel is not None and (
            not isinstance(kernel, int) or isinstance(kernel, bool) or not 0 <= kernel <= MAX_KERNEL
        ):
            raise ValueError(f"kernel must be null or an integer 0..{MAX_KERNEL}, not {kernel!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt must be a string of at most {MAX_PROMPT_CHARS} characters")
        if not isinstance(completion, str) or not 1 <= len(completion) <= MAX_COMPLETION_CHARS:
            raise ValueError(f"completion must be a string of 1..{MAX_COMPLETION_CHARS} characters")
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not HIGH_VALUE <= value <= 1.0
        ):
            raise ValueError(f"value must be a number in [{HIGH_VALUE}, 1], not {value!r}")
        if not isinstance(digest, str):
            raise ValueError(f"digest must be a string, not {type(digest).__name__}")
        expected = digest_of(kernel, prompt, completion)
        if digest != expected:
            raise ValueError(f"digest {digest!r} does not match its content (expected {expected})")
        return cls(kernel, kind, prompt, completion, float(value), digest)


def make(kernel: int | None, kind: str, prompt: str, completion: str, value: float) -> Pattern:
    """A pattern with its digest."""
    return Pattern(kernel, kind, prompt, completion, float(value),
                   digest_of(kernel, prompt, completion))  # fmt: skip


def user_names() -> list[str]:
    """Every non-empty username, first name and last name of the node's users."""
    from django.contrib.auth import get_user_model

    rows = get_user_model().objects.values_list("username", "first_name", "last_name")
    return sorted({name.strip() for row in rows for name in row if name and name.strip()})


def high_value_patterns(
    since: datetime | None = None, kernels: Iterable[int] | None = None
) -> list[Pattern]:
    """The node's high-value patterns (signals created at or after `since`, on `kernels` when
    given), anonymised, one per digest (the highest value kept), sorted by kernel (None last)
    and digest."""
    from learning.models import LearningSignal
    from learning.records import record_of

    rows = LearningSignal.objects.filter(value__gte=HIGH_VALUE, kind__in=KINDS).select_related(
        "interaction"
    )
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if kernels is not None:
        rows = rows.filter(kernel_index__in=list(kernels))
    names = user_names()
    best: dict[str, Pattern] = {}
    for s in rows.order_by("id"):
        prompt: Any = None
        completion = ""
        if s.interaction is not None:
            record = record_of(s)
            prompt, completion = record["prompt"], record["completion"]
        elif isinstance(s.details, dict):
            prompt, completion = s.details.get("prompt"), s.content
        if not isinstance(prompt, str) or not prompt.strip() or not completion.strip():
            continue
        prompt, completion = anonymise(prompt, names), anonymise(completion, names)
        if len(prompt) > MAX_PROMPT_CHARS or len(completion) > MAX_COMPLETION_CHARS:
            continue
        found = make(s.kernel_index, str(s.kind), prompt, completion, min(1.0, s.value))
        held = best.get(found.digest)
        if held is None or (found.value, found.kind) > (held.value, held.kind):
            best[found.digest] = found
    return sorted(best.values(), key=sort_key)


def sort_key(p: Pattern) -> tuple[bool, int, str]:
    return (p.kernel is None, p.kernel if p.kernel is not None else 0, p.digest)
