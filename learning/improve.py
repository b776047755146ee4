"""What a learning cycle finds in the signals and does about it (`learning.loop` runs the cycle;
docs/training.md, "The autonomous loop").

Opportunities, typed and scored by their signals' values:
- `correction`: a kernel's answers people corrected ("suggest a better answer"), with its approved
  answers alongside; `reinforce`: a kernel's approved answers (thumbs up) alone. The kernel is
  the one that answered, or, for an answer of the bare trunk, the kernel nearest the question.
  Improvement: one low-priority adapter job on the kernel, its data an upload the cycle makes
  (a correction as prompt → completion, an approved answer the same way), started from the
  version the kernel serves and held to the promotion gate, with the kernel's earlier held-out
  text among what must not get worse.
- `vocabulary`: words users keep typing (in at least `VOCAB_MIN_USES` questions) that the
  coordizer still splits badly. Improvement: `learning.vocabulary.expand_vocabulary`.
- `constraint` (thumbs down, stated rules) and `explore` (a question asked again, a long session,
  with no better answer given): recorded for sync, nothing trained.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from django.conf import settings

from constellation import published
from constellation.engine import e8
from constellation.models import Kernel
from learning import services as jobs
from learning.models import JobKind, LearningCycle, LearningSignal, SignalKind
from learning.opportunity import VOCAB_MAX_NEW, VOCAB_MIN_USES, Opportunity, counted
from learning.promotion import distances
from learning.records import prompt_of, record_of, taught_text
from learning.usage_signals import current_coordizer, normalised, question_of
from learning.vocabulary import MAX_WORD_CHARS
from qigcenter.errors import DomainError
from uploads import services as uploads

MAX_ROTATIONS = 8
LOOP_PRIORITY = -10  # below every job a person queued
TRAINED = (SignalKind.CORRECTION, SignalKind.ACCEPTED)
RECORDED: dict[str, str] = {
    SignalKind.REJECTED: "constraint",
    SignalKind.CONSTRAINT: "constraint",
    SignalKind.REPEATED_QUERY: "explore",
    SignalKind.LONG_SESSION: "explore",
}


# ---- opportunities ----------------------------------------------------------------------------
def opportunities(signals: list[LearningSignal], gaps: dict[str, Any]) -> list[Opportunity]:
    """The cycle's opportunities from its signals and the vocabulary gaps (`vocabulary_gaps`)."""
    found: list[Opportunity] = []
    taught: dict[int, dict[str, list[LearningSignal]]] = defaultdict(lambda: defaultdict(list))
    recorded: dict[str, list[LearningSignal]] = defaultdict(list)
    nearest = NearestKernel()
    for s in signals:
        prompt = prompt_of(s)
        if s.kind in TRAINED and prompt and taught_text(s):
            kernel = s.kernel_index if s.kernel_index is not None else nearest(prompt)
            if kernel is not None:
                taught[kernel][s.kind].append(s)
        elif s.kind in RECORDED:
            recorded[RECORDED[s.kind]].append(s)
    for kernel, kinds in sorted(taught.items()):
        corrections, approved = kinds[SignalKind.CORRECTION], kinds[SignalKind.ACCEPTED]
        both = [*corrections, *approved]
        words = [_n(len(corrections), "correction"), _n(len(approved), "approved answer")]
        found.append(
            Opportunity(
                kind="correction" if corrections else "reinforce",
                score=max(s.value for s in both),
                kernel=kernel,
                signals=[s.pk for s in both],
                summary=f"{' and '.join(w for w in words if w)} on kernel {kernel}",
                material={"records": [record_of(s) for s in both]},
            )
        )
    if gaps["words"]:
        found.append(
            Opportunity(
                kind="vocabulary",
                score=gaps["score"],
                kernel=None,
                signals=[s.pk for s in signals if s.kind == SignalKind.UNKNOWN_TOKENS],
                summary=f"vocabulary gap: {', '.join(list(gaps['words'])[:8])}",
                material={"words": gaps["words"]},
            )
        )
    for kind, rows in sorted(recorded.items()):
        found.append(
            Opportunity(
                kind=kind,
                score=max(s.value for s in rows),
                kernel=None,
                signals=[s.pk for s in rows],
                summary=f"{kind}: {counted(Counter(s.kind for s in rows))}",
                actionable=False,
                why=""
                if kind == "constraint"
                else "no better answer to learn from yet (suggesting one makes it a correction)",
            )
        )
    return found


class NearestKernel:
    """The kernel whose anchor is nearest a prompt's basin (for answers the trunk gave)."""

    def __init__(self) -> None:
        self.coordizer = current_coordizer()
        held = Kernel.objects.all()
        if settings.FEDERATION == "edge":  # an edge learns on the kernels of its size only
            held = held.filter(index__in=e8.preset_kernels(settings.FEDERATION_SIZE))
        rows = list(held.order_by("index").values_list("index", "anchor"))
        self.indices = [index for index, _ in rows]
        self.anchors = np.asarray([anchor for _, anchor in rows], dtype=np.float64)

    def __call__(self, prompt: str) -> int | None:
        if self.coordizer is None or not self.indices:
            return None
        basin = self.coordizer.text_basin(prompt)
        return self.indices[int(np.argmin(distances(basin, self.anchors)))]


def vocabulary_gaps(limit: int = 2000) -> dict[str, Any]:
    """Words the coordizer still splits into ≥ `QIG_SIGNAL_UNKNOWN_TOKENS` tokens that people
    typed in at least `VOCAB_MIN_USES` questions (the last `limit` unknown-token signals, used
    or not: a word's uses add up over cycles). {"words": {word: uses}, "score"}."""
    rows = list(
        LearningSignal.objects.filter(kind=SignalKind.UNKNOWN_TOKENS)
        .order_by("-created_at")
        .values_list("details", "value")[:limit]
    )
    uses: Counter[str] = Counter()
    for details, _ in rows:
        uses.update((details or {}).get("tokens", {}).keys())
    candidates = [
        w for w, n in uses.most_common() if n >= VOCAB_MIN_USES and len(w) <= MAX_WORD_CHARS
    ]
    coordizer = current_coordizer()
    if not candidates or coordizer is None:
        return {"words": {}, "score": 0.0}
    counts = [len(ids) for ids in coordizer.encode_batch([" " + w for w in candidates])]
    least = settings.SIGNAL_UNKNOWN_TOKENS
    words = {w: uses[w] for w, n in zip(candidates, counts, strict=True) if n >= least}
    values = [v for _, v in rows]
    score = min(1.0, float(np.mean(values)) if values else 0.0)
    return {"words": words, "score": score}


# ---- improvements -----------------------------------------------------------------------------
def act(cycle: LearningCycle, o: Opportunity) -> dict[str, Any]:
    """Carry out one chosen opportunity; the action as the cycle records it."""
    try:
        if o.kind in ("correction", "reinforce"):
            return _adapter_job(cycle, o)
        if o.kind == "vocabulary":
            return _vocabulary(o)
        return {
            "kind": "constraint",
            "kernel": None,
            "job": None,
            "status": "done",
            "summary": f"{len(o.signals)} constraint signal(s) recorded for sync",
        }
    except (DomainError, ValueError, OSError) as exc:
        return {"kind": o.kind, "kernel": o.kernel, "job": None, "status": "refused",
                "summary": f"{o.kind} on kernel {o.kernel}: not done: {exc}"[:300]}  # fmt: skip


def _adapter_job(cycle: LearningCycle, o: Opportunity) -> dict[str, Any]:
    assert o.kernel is not None
    records = o.material["records"]
    name = f"learning-cycle-{cycle.pk}-kernel-{o.kernel}.jsonl"
    upload = uploads.store_records(name, rotations(records), domain="auto")
    job = jobs.queue_job(
        kind=JobKind.ADAPTER,
        created_by=None,
        hyperparameters=improvement_hyperparameters(records),
        target_kernels=[o.kernel],
        priority=LOOP_PRIORITY,
        dataset_ids=[upload.pk],
    )
    return {
        "kind": "adapter_job",
        "kernel": o.kernel,
        "job": job.pk,
        "upload": upload.pk,
        "status": job.status,
        "summary": f"adapter job {job.pk} on kernel {o.kernel}: {o.summary}",
    }


def rotations(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """The records once in each of N rotations: a window holds one rotation (the seq_len of
    `improvement_hyperparameters`), so each record is learned once with no text before it, as
    it will be asked. In one order only, a later record was learned only after the earlier ones'
    text, and a tiny model then answered it alone wrongly (two corrections on one kernel: the
    second answered "The Zorblax kepers." until rotated; tests/federation/test_bundles_live.py).
    At most `MAX_ROTATIONS` of them, evenly spaced (many records do not fit one window anyway)."""
    n = len(records)
    return [
        r for i in range(0, n, max(1, -(-n // MAX_ROTATIONS))) for r in records[i:] + records[:i]
    ]


def improvement_hyperparameters(records: list[dict[str, str]]) -> dict[str, Any]:
    """A few prompt → completion records: one window holds them all (up to the trunk's context),
    so every completion is learned after its whole prompt; started from the served version."""
    coordizer = current_coordizer()
    if coordizer is None:
        raise ValueError("there is no coordizer yet")
    tokens = sum(len(coordizer.encode(r["prompt"])) + len(coordizer.encode(r["completion"])) + 1
                 for r in records)  # fmt: skip
    cfg = published.trunk_config()
    seq_len = max(8, min(tokens - 1, cfg.max_seq_len if cfg else 256))
    return {
        "steps": settings.LEARNING_STEPS,
        "seq_len": seq_len,
        "batch_size": 4,
        "learning_rate": 5e-3,
        "start": "served",
    }


def _vocabulary(o: Opportunity) -> dict[str, Any]:
    from learning.vocabulary import expand_vocabulary

    report = expand_vocabulary(o.material["words"], VOCAB_MAX_NEW)
    added = report.get("added", [])
    summary = (
        f"vocabulary: {len(added)} word(s) added "
        f"({report['vocab_before']} → {report['vocab_after']} tokens)"
        if added
        else f"vocabulary: nothing added ({report.get('reason', 'no word could be')})"
    )
    return {
        "kind": "vocabulary",
        "kernel": None,
        "job": None,
        "status": "done" if added else "refused",
        "summary": summary,
        "report": report,
    }


# ---- sync ---------------------------------------------------------------------------------------
def sync_delta(cycle: LearningCycle, read: list[LearningSignal]) -> dict[str, Any]:
    """The cycle's learning delta (DESIGN §7's "learning delta": new patterns as short hashes,
    reinforced basins, constraints, vocabulary additions) from the signals it `read`. The
    federation outbox takes it when the node is federated; this node records it with the cycle."""
    chosen = [o for o in cycle.opportunities if o.get("chosen")]
    signals = {s.pk: s for s in read}

    def pattern(pk: int) -> str:
        item = signals[pk].interaction if pk in signals else None
        text = normalised(question_of(item)) if item is not None else ""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    delta = {
        "patterns": [
            {"kernel": o["kernel"], "kind": o["kind"], "hashes": [pattern(p) for p in o["signals"]]}
            for o in chosen
            if o["kind"] in ("correction", "reinforce")
        ],
        "constraints": [
            {"hash": pattern(p), "kernel": signals[p].kernel_index}
            for o in chosen
            if o["kind"] == "constraint"
            for p in o["signals"]
            if p in signals
        ],
        "vocabulary": [
            w["word"]
            for a in cycle.actions
            if a["kind"] == "vocabulary"
            for w in a.get("report", {}).get("added", [])
        ],
        "jobs": [a["job"] for a in cycle.actions if a.get("job")],
    }
    from federation import edge

    if not edge.is_edge():
        return {
            "federated": False,
            "outbox": "recorded (this node is not federated)",
            "delta": delta,
        }
    rows = edge.enqueue(
        {},
        "loop",
        delta={
            "patterns": [h for p in delta["patterns"] for h in p["hashes"]],
            "reinforced": sorted(
                {p["kernel"] for p in delta["patterns"] if p["kernel"] is not None}
            ),
            "vocabulary": delta["vocabulary"],
        },
        constraints={"failed": [c["hash"] for c in delta["constraints"]]},
    )
    from federation import learnings

    sleep = learnings.enqueue_new(
        NearestKernel()
    )  # the high-value learnings themselves (update bundles)
    said = f"{len(rows)} packet(s) queued for central" if rows else "nothing to send to central"
    if sleep:
        said += f", and {len(sleep)} learnings packet(s)"
    return {"federated": True, "outbox": said, "packets": [str(r.packet_id) for r in rows],
            "learnings": [str(r.packet_id) for r in sleep], "delta": delta}  # fmt: skip


def _n(count: int, word: str) -> str:
    return "" if not count else f"{count} {word}{'s' if count > 1 else ''}"
