"""A learning cycle's opportunities: what `learning.improve` finds in the signals, typed and
scored, and which of them a cycle acts on (docs/training.md, "The autonomous loop")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

VOCAB_MIN_USES = 2  # a word splits badly in at least this many questions: users keep typing it
VOCAB_MAX_NEW = 32  # new token ids one cycle may add


@dataclass
class Opportunity:
    kind: str  # correction | reinforce | vocabulary | constraint | explore
    score: float  # 0..1
    kernel: int | None
    signals: list[int]
    summary: str
    actionable: bool = True  # an improvement can come of it (explore and constraint: recorded)
    chosen: bool = False
    why: str = ""
    material: dict[str, Any] = field(default_factory=dict)  # what `improve.act` works with

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("material")
        out["score"] = round(self.score, 4)
        return out


def choose(found: list[Opportunity], limit: int) -> list[Opportunity]:
    """The best `limit` actionable opportunities, by score (the constraints ride along: they are
    recorded, not trained)."""
    ranked = sorted(found, key=lambda o: (-o.score, o.kind, o.kernel or -1))
    picked: list[Opportunity] = []
    for o in ranked:
        if not o.actionable:
            o.chosen = o.kind == "constraint"
            o.why = o.why or ("recorded for sync" if o.chosen else "nothing to act on")
        elif len([p for p in picked if p.actionable]) < limit:
            o.chosen, o.why = True, f"among the top {limit} by score"
        else:
            o.why = f"beyond the {limit} improvements a cycle makes: waits for the next cycle"
        if o.chosen:
            picked.append(o)
    return picked


def counted(kinds: Mapping[str, int]) -> str:
    """`{"correction": 1, "unknown_tokens": 2}` → "1 correction, 2 unknown tokens"."""
    return ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
