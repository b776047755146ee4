"""Held-out evaluation, the promotion gate and the routing radius of an adapter job's kernels
(docs/training.md, "Held-out evaluation and promotion").

Each kernel is measured on three streams before it trains (with the version it serves now: its
published adapter, or the bare trunk) and after (with the new adapter): its own held-out chunks,
the general held-out set (`learning.datasets.general_heldout`) and, as a secondary figure, the
held-in training stream. The general set is measured twice: with the adapter on all of it, and
*as served* — each general chunk with the adapter only when the router would send it to this
kernel (its anchor and calibrated radius, the other kernels as served now; `routed_here`), else
with the bare trunk. The new version goes live only if its own held-out loss improved and the
general held-out loss as served rose by at most `QIG_PROMOTION_TOLERANCE` (relative): what users
get is what learning must not make worse; and, as a backstop, the one with the adapter on all
general text by at most `ALL_TEXT_FACTOR` times that. A version's routing radius is calibrated
from the Fisher–Rao distances of the kernel's new anchor to its own held-out chunks and to the
general ones (`calibrate`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from constellation import published
from constellation.engine import (
    Adapter,
    Coordizer,
    LoRARoute,
    Router,
    TokenStream,
    TrainConfig,
    Trunk,
    as_basin,
    e8,
)
from constellation.engine.router import calibrate_radius
from constellation.engine.trainer import evaluate_loss
from constellation.inference import read_meta, route_anchor, route_radius
from constellation.models import Kernel
from learning.datasets import Split, general_heldout, text_chunks, token_stream
from uploads.extract import record_text

log = logging.getLogger(__name__)

HELDIN_WINDOWS = 16  # windows of the training stream measured before and after (secondary)
HELDOUT_WINDOWS = 32  # at most this many windows of each held-out stream
CHUNK_WINDOWS = 8  # at most this many windows of each general chunk, measured as served
COVER = 0.9  # the radius takes in at least this share of the kernel's own held-out chunks …
UNRELATED = 0.1  # … and at most this share of the general (unrelated) chunks
# The backstop: with the adapter on ALL general text the loss may rise by at most this many times
# the tolerance (docs/training.md: no dataset was found that harms general text as served on the
# tiny preset; this catches a kernel whose radius would let in more than the held-out set showed).
ALL_TEXT_FACTOR = 5
FIGURES = (
    *("own_before", "own_after"),
    *("general_before", "general_after"),
    *("served_before", "served_after"),
    *("heldin_before", "heldin_after"),
    *("previous_before", "previous_after"),
)


# ---- what is measured -------------------------------------------------------------------------
@dataclass
class EvalSets:
    """What each kernel of a job is measured on, built once per job."""

    own: TokenStream  # the held-out chunks (the held-in data when nothing could be held out)
    general: TokenStream | None  # the general held-out set (None: no bootstrap corpus text)
    general_chunks: list[TokenStream]  # the same set, one stream per chunk (scored as served)
    own_basins: np.ndarray  # (N, 64) one per own chunk
    general_basins: np.ndarray  # (M, 64)
    own_is_heldout: bool
    prompt_routed: bool = False  # prompt → completion records: routed by their prompts


def _chunk_texts(examples: list[Any]) -> list[str]:
    """The chunks' texts (a held-in text record is chunked again, as the split cut it)."""
    texts = []
    for example in examples:
        plain = isinstance(example, str) or set(example) == {"text"}
        text = example if isinstance(example, str) else record_text(example)
        texts += text_chunks(text) if plain else [text]
    return [t for t in texts if t.strip()]


def eval_sets(split: Split, coordizer: Coordizer) -> EvalSets:
    own = split.held_out or split.held_in
    general = general_heldout(split.held_in)
    own_texts, general_texts = route_texts(own, general)
    return EvalSets(
        own=token_stream(own, coordizer),
        general=token_stream(general, coordizer) if general else None,
        general_chunks=[token_stream([chunk], coordizer) for chunk in general],
        own_basins=coordizer.text_basins(own_texts),
        general_basins=coordizer.text_basins(general_texts) if general else np.zeros((0, 64)),
        own_is_heldout=bool(split.held_out),
        prompt_routed=prompt_shaped(own),
    )


CHAT_END = "\nassistant:"  # how `constellation.prompts.chat_prompt` ends a chat's prompt


def prompt_shaped(own: list[Any]) -> bool:
    """All of them prompt → completion records."""
    wanted = {"prompt", "completion"}
    return bool(own) and all(isinstance(r, dict) and wanted <= set(r) for r in own)


def route_texts(own: list[Any], general: list[str]) -> tuple[list[str], list[str]]:
    """The own and general texts in the form the router will see them. Text chunks: as they are.
    Prompt → completion records (corrections, approved answers) are routed by their prompt, so
    the general set is put in the same form: each chunk cut to the prompts' median length (at a
    space) and, when the prompts are chat prompts, framed as one (`user: …` / `assistant:`); the
    radius then separates questions from questions of the same length (distances shrink as
    texts grow)."""
    if not prompt_shaped(own):
        return _chunk_texts(own), general
    prompts = [str(r["prompt"]) for r in own]
    length = int(np.median([len(p) for p in prompts]))
    return prompts, question_forms(general, length, all(p.endswith(CHAT_END) for p in prompts))


def question_forms(general: list[str], length: int, chat: bool) -> list[str]:
    """The general chunks as questions: each cut to `length` characters (at a space) and, when
    `chat`, framed as a chat prompt (`route_texts`)."""
    questions = []
    for chunk in general:
        cut = chunk[: max(8, length)]
        cut = cut[: cut.rfind(" ")] if " " in cut[8:] else cut
        questions.append(f"user: {cut.strip()}{CHAT_END}" if chat else cut)
    return questions


@torch.no_grad()
def stream_loss(
    trunk: Trunk,
    stream: TokenStream | None,
    adapter: Adapter | None,
    hp: dict[str, Any],
    max_windows: int = HELDOUT_WINDOWS,
) -> float | None:
    """Mean loss over the first windows of `stream` with `adapter` (None: the bare trunk); a
    stream shorter than one `seq_len` window is measured as one shorter window."""
    if stream is None or len(stream) < 3:
        return None
    seq_len = min(int(hp["seq_len"]), len(stream) - 1)
    config = TrainConfig(mode="adapter", steps=1, batch_size=hp["batch_size"], seq_len=seq_len)
    route = LoRARoute(adapter=adapter) if adapter is not None else None
    loss = evaluate_loss(trunk, stream, config, route, max_windows)
    return loss if math.isfinite(loss) else None  # a diverged run measures nothing


def serving_adapter(index: int, trunk: Trunk) -> tuple[Adapter | None, str]:
    """The kernel's version served now, to measure "before" with: (its adapter, its name), or
    (None, "the bare trunk") when it has none the trunk can use."""
    if index not in published.kernel_adapter_dirs():
        return None, "the bare trunk"
    try:
        adapter, cfg = published.load_adapter(index)
    except (OSError, ValueError, KeyError):
        log.warning("kernel %s: its published adapter cannot be read", index, exc_info=True)
        return None, "the bare trunk"
    if not trunk.cfg.serves(cfg):  # trained for another trunk: it serves nothing useful now
        return None, "the bare trunk"
    current = published.current_version(published.kernel_dir(index))
    name = current.name if current is not None else str(published.kernel_dir(index))
    return adapter.to(trunk.device), name


def routed_here(
    index: int, sets: EvalSets, anchor: Any | None = None, radius: float | None = None
) -> list[bool]:
    """Which general chunks the router (`constellation.engine.Router`, the rule serving applies)
    sends to kernel `index`: those within its radius, nearest among the kernels within theirs.
    The other kernels with a published adapter are there as served (`kernel.json`'s anchor and
    radius, as `constellation.inference` loads them). `anchor` None: kernel `index` as served
    now (no chunk when it has no adapter); else a new version there, with `radius` (None: the one
    `calibrate` gives it there, the radius it is published with)."""
    if len(sets.general_basins) == 0:
        return []
    served = published.kernel_adapter_dirs()
    if anchor is None and index not in served:
        return [False] * len(sets.general_basins)
    rows = {k.index: k.anchor for k in Kernel.objects.filter(index__in=list(served))}
    anchors: dict[int, Any] = {}
    radii: dict[int, float] = {}
    for k in served:
        meta = read_meta(k)
        found = route_anchor(meta, rows.get(k))
        anchors[k] = found if found is not None else e8.anchor(k)
        radii[k] = route_radius(meta)
    if anchor is not None:
        anchors[index] = anchor
        radii[index] = radius if radius is not None else radius_at(anchor, sets)
    router = Router(anchors, radii=radii)
    routes = [router.route(basin) for basin in sets.general_basins]
    return [r.answered_by == "kernel" and r.kernels[0] == index for r in routes]


def radius_at(anchor: Any, sets: EvalSets) -> float:
    """The radius a version at `anchor` is published with (`calibrate`; the default radius when
    there are no own chunks to calibrate it from)."""
    if len(sets.own_basins) == 0:
        return route_radius({})
    return calibrate(anchor, sets.own_basins, sets.general_basins).radius


def served_loss(
    trunk: Trunk,
    sets: EvalSets,
    adapter: Adapter | None,
    answers: list[bool],
    hp: dict[str, Any],
) -> float | None:
    """The general held-out loss as served: the mean over the general chunks of each one's loss
    with `adapter` where `answers` says the kernel answers it, with the bare trunk elsewhere."""
    losses = []
    for chunk, answered in zip(sets.general_chunks, answers, strict=True):
        loss = stream_loss(trunk, chunk, adapter if answered else None, hp, CHUNK_WINDOWS)
        if loss is None and answered and adapter is not None:
            return None  # diverged where it answers
        if loss is not None:
            losses.append(loss)
    return float(np.mean(losses)) if losses else None


def measure(
    trunk: Trunk,
    adapter: Adapter | None,
    sets: EvalSets,
    held_in: TokenStream | None,
    hp: dict[str, Any],
    answers: list[bool] | None = None,
) -> dict[str, Any]:
    """The losses with `adapter`; `answers` (`routed_here`): which general chunks it answers as
    served (None: none — the bare trunk everywhere)."""
    answers = answers if answers is not None else [False] * len(sets.general_chunks)
    return {
        "own": stream_loss(trunk, sets.own, adapter, hp),
        "general": stream_loss(trunk, sets.general, adapter, hp),
        "served": served_loss(trunk, sets, adapter, answers, hp),
        "answers": int(sum(answers)),
        "heldin": stream_loss(trunk, held_in, adapter, hp, HELDIN_WINDOWS),
    }


# ---- the gate ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """A kernel's losses before (the version it serves) and after (the new one)."""

    own_before: float | None
    own_after: float | None
    general_before: float | None  # with the adapter on all general text
    general_after: float | None
    served_before: float | None  # as served: the adapter only where the router sends it
    served_after: float | None
    heldin_before: float | None
    heldin_after: float | None
    own_is_heldout: bool
    own_chunks: int
    general_chunks: int
    answered_before: int = 0  # general chunks the kernel answered as served before / after
    answered_after: int = 0
    # A continued kernel (`start` served): its earlier jobs' held-out text, before / after.
    previous_before: float | None = None
    previous_after: float | None = None

    @property
    def previous_change(self) -> float | None:
        return _change(self.previous_before, self.previous_after)

    @property
    def general_change(self) -> float | None:
        """Relative change of the general held-out loss, adapter on all of it (+0.01: 1 % worse)."""
        return _change(self.general_before, self.general_after)

    @property
    def served_change(self) -> float | None:
        """Relative change of the general held-out loss as served: what the gate decides on."""
        return _change(self.served_before, self.served_after)

    def as_dict(self) -> dict[str, Any]:
        changes = {
            "general_change": self.general_change,
            "served_change": self.served_change,
            "previous_change": self.previous_change,
        }
        return {**asdict(self), **changes}


def _change(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else (after - before) / before


def figures(before: dict[str, Any], after: dict[str, Any], sets: EvalSets) -> Figures:
    return Figures(
        own_before=before["own"],
        own_after=after["own"],
        general_before=before["general"],
        general_after=after["general"],
        served_before=before.get("served"),
        served_after=after.get("served"),
        heldin_before=before["heldin"],
        heldin_after=after["heldin"],
        own_is_heldout=sets.own_is_heldout,
        own_chunks=len(sets.own_basins),
        general_chunks=len(sets.general_basins),
        answered_before=int(before.get("answers", 0)),
        answered_after=int(after.get("answers", 0)),
        previous_before=before.get("previous"),
        previous_after=after.get("previous"),
    )


def decide(f: Figures, tolerance: float, backstop: bool = True) -> tuple[bool, str]:
    """(promoted, why): its own held-out loss must fall, and the general held-out loss as served
    rise by ≤ tolerance (the one with the adapter on all general text is reported alongside, and
    held to `ALL_TEXT_FACTOR` × tolerance when `backstop`: text uploads, whose radius was
    calibrated on chunks while people ask short questions; prompt → completion data is
    calibrated on questions of its own prompts' shape, so what it serves is what is checked)."""
    own = "held-out" if f.own_is_heldout else "held-in (nothing could be held out)"
    if f.own_before is None or f.own_after is None:
        return False, f"its {own} loss could not be measured (too little text, or it diverged)"
    own_figures = f"{own} loss {f.own_before:.3f} → {f.own_after:.3f}"
    if not f.own_after < f.own_before:
        return False, f"its {own_figures} did not improve"
    earlier = f.previous_change
    if earlier is not None and earlier > tolerance:
        return False, (
            f"its earlier held-out text's loss rose {f.previous_before:.3f} → "
            f"{f.previous_after:.3f} ({earlier:+.1%}), beyond the {tolerance:.1%} tolerance "
            f"({own_figures})"
        )
    if f.served_before is not None and f.served_after is None:
        return False, f"the general held-out loss could not be measured after it ({own_figures})"
    change, all_text = f.served_change, f.general_change
    if change is None:
        return True, f"{own_figures}; no general held-out set to check"
    served = (
        f"general held-out loss as served {f.served_before:.3f} → {f.served_after:.3f} "
        f"({change:+.1%}; it answers {f.answered_after}/{f.general_chunks} general chunks"
        + (f", {all_text:+.1%} with it on all of them)" if all_text is not None else ")")
    )
    if change > tolerance:
        return False, f"the {served} rose beyond the {tolerance:.1%} tolerance ({own_figures})"
    limit = ALL_TEXT_FACTOR * tolerance
    if backstop and all_text is not None and all_text > limit:
        return False, (
            f"with it on all general text the general held-out loss rose {all_text:+.1%}, beyond "
            f"the {limit:.1%} backstop (the {served}; {own_figures})"
        )
    return True, f"{own_figures}; {served}, tolerance {tolerance:.1%}"


# ---- the routing radius -----------------------------------------------------------------------
def distances(anchor: Any, basins: np.ndarray) -> np.ndarray:
    """Fisher–Rao distances (the router's 2·arccos(√p·√q)) of each basin (N, 64) to the anchor."""
    if len(basins) == 0:
        return np.zeros(0)
    sqrt_anchor = np.sqrt(as_basin(np.asarray(anchor, dtype=np.float64), "anchor"))  # (64,)
    cos = np.sqrt(as_basin(np.asarray(basins, dtype=np.float64), "basins")) @ sqrt_anchor  # (N,)
    return np.asarray(2.0 * np.arccos(np.clip(cos, 0.0, 1.0)))


@dataclass(frozen=True)
class Calibration:
    radius: float
    cover: float  # the smallest radius taking in ≥ COVER of the own held-out chunks
    unrelated_floor: float | None  # radii below it take in ≤ UNRELATED of the general chunks
    overlap: bool  # cover ≥ unrelated_floor: the radius was capped, below COVER of its own
    own_within: float  # the share of its own held-out chunks within the radius
    unrelated_within: float | None  # the share of general chunks within the radius
    own_median: float
    unrelated_median: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(anchor: Any, own_basins: np.ndarray, general_basins: np.ndarray) -> Calibration:
    """The kernel's routing radius (docs/training.md): midway between `cover` (the COVER
    quantile of its own chunks' distances) and `unrelated_floor` (the UNRELATED quantile of the
    general chunks') when they are apart; just below `unrelated_floor` when they overlap."""
    return calibrate_distances(distances(anchor, own_basins), distances(anchor, general_basins))


def calibrate_distances(own_distances: Any, general_distances: Any) -> Calibration:
    """`calibrate` from the distances to the anchor (the own ones may be measured elsewhere: a
    federated round's edges measure their learnings' prompts, docs/flower.md)."""
    own = np.sort(np.asarray(own_distances, dtype=np.float64).ravel())
    other = np.sort(np.asarray(general_distances, dtype=np.float64).ravel())
    assert len(own) > 0, "calibrate: no own chunks to cover"
    cover = float(own[math.ceil(COVER * len(own)) - 1])
    if len(other) == 0:
        radius, floor, overlap = cover, None, False
    else:  # the engine's rule, the one the router documents (docs/inference.md, "Routing")
        radius = calibrate_radius(own, other, cover=COVER, admitted=UNRELATED)
        floor = float(other[math.floor(UNRELATED * len(other))])
        overlap = cover >= floor
    return Calibration(
        radius=radius,
        cover=cover,
        unrelated_floor=floor,
        overlap=overlap,
        own_within=float(np.mean(own <= radius)),
        unrelated_within=float(np.mean(other <= radius)) if len(other) else None,
        own_median=float(np.median(own)),
        unrelated_median=float(np.median(other)) if len(other) else None,
    )
