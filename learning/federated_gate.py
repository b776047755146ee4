"""The promotion gate for an adapter averaged by a federated round (docs/flower.md, "The result"),
with its kernel's own figures measured where the data is: on the edges (federated evaluation).

The edges' learnings never reach central, so central cannot measure the average on them. Each
edge of the round measures the kernel's served version ("before": the round's starting adapter)
and the average ("after") on its own learnings for the kernel, held out from its training when it
has enough of them (`federation.flower.evaluation`), and sends the losses, its example count and
the Fisher–Rao distances of its learnings' prompts to the kernel's anchor: numbers, no text.
Central then decides with the learning loop's rule (`learning.promotion.decide`):

- **own**: the edges' example-weighted loss must fall;
- **general as served** must rise by at most QIG_PROMOTION_TOLERANCE: central measures its general
  held-out set as questions of the edges' prompts' shape, each with the average only where the
  router would send it (the kernel's anchor, the radius calibrated from the edges' distances and
  central's general questions), as for the loop's corrections;
- **earlier text**: when adapter jobs on central made the kernel's kept versions, their held-out
  text is the "previous" figure, which may rise by at most the tolerance too.

Promoted, the average becomes the kernel's current version (`adapter_gate.publish`: kernel.json
keeps the figures, the calibrated radius and the round it came from; rolled back like any other).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from constellation import published
from constellation.creation import Offer, Verdict
from constellation.engine import TokenStream
from constellation.models import Kernel
from constellation.services import ensure_kernels
from learning import adapter_gate, promotion
from learning.datasets import general_heldout, token_stream
from learning.services import HYPERPARAMETERS


@dataclass(frozen=True)
class EdgeEvaluation:
    """What the edges of a round measured: their example-weighted losses before (the served
    version) and after (the average), on their own learnings for the kernel."""

    examples: int
    before: float | None
    after: float | None
    heldout: bool  # every edge measured on learnings it held out from training
    distances: list[float] = field(default_factory=list)  # their prompts' to the anchor
    prompt_chars: int = 0  # the prompts' median length (the general questions are cut to it)
    chat: bool = True  # the prompts are chat prompts
    edges: list[dict[str, Any]] = field(default_factory=list)  # each edge's figures, or why not

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["distances"] = len(self.distances)  # (how many; the figures are in the calibration)
        return found


def judge_federated(offer: Offer, edges: EdgeEvaluation) -> Verdict:
    """Measure central's side, decide, and publish the average when the gate promotes it."""
    index = offer.kernel
    ensure_kernels()
    if edges.examples <= 0 or edges.before is None or edges.after is None:
        return adapter_gate.refused(
            offer, Verdict(False, "no edge measured it on its own learnings (federated evaluation)")
        )
    if not edges.distances:
        return adapter_gate.refused(
            offer, Verdict(False, "no edge sent its prompts' distances to calibrate a radius with")
        )
    trunk = published.load_trunk()
    if not trunk.cfg.serves(offer.trunk):
        return Verdict(False, "the trunk changed since the round started: run it again")
    coordizer = published.load_coordizer()
    hp = {k: HYPERPARAMETERS[k].default for k in ("seq_len", "batch_size")}
    general = general_heldout()
    questions = promotion.question_forms(general, edges.prompt_chars, edges.chat)
    sets = promotion.EvalSets(
        own=TokenStream(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)),  # (the edges')
        general=token_stream(general, coordizer) if general else None,
        general_chunks=[token_stream([chunk], coordizer) for chunk in general],
        own_basins=np.zeros((0, 64)),
        general_basins=coordizer.text_basins(questions) if questions else np.zeros((0, 64)),
        own_is_heldout=edges.heldout,
        prompt_routed=True,
    )
    anchor = [float(v) for v in Kernel.objects.get(index=index).anchor]
    calibration = promotion.calibrate_distances(
        edges.distances, promotion.distances(anchor, sets.general_basins)
    )
    serving, serving_name = promotion.serving_adapter(index, trunk)
    answers = promotion.routed_here(index, sets)
    answers_after = promotion.routed_here(index, sets, np.asarray(anchor), calibration.radius)
    previous = _earlier_text(index, coordizer)
    before = {
        "own": edges.before,
        "general": promotion.stream_loss(trunk, sets.general, serving, hp),
        "served": promotion.served_loss(trunk, sets, serving, answers, hp),
        "answers": int(sum(answers)),
        "heldin": None,
        "previous": promotion.stream_loss(trunk, previous, serving, hp),
    }
    after = {
        "own": edges.after,
        "general": promotion.stream_loss(trunk, sets.general, offer.adapter, hp),
        "served": promotion.served_loss(trunk, sets, offer.adapter, answers_after, hp),
        "answers": int(sum(answers_after)),
        "heldin": None,
        "previous": promotion.stream_loss(trunk, previous, offer.adapter, hp),
    }
    figures = promotion.figures(before, after, sets)
    figures = promotion.Figures(**{**asdict(figures), "own_chunks": edges.examples})
    promoted, reason = promotion.decide(figures, settings.PROMOTION_TOLERANCE, backstop=False)
    reason = f"{reason}; measured on {edges.examples} learning(s) of {len(edges.edges)} edge(s)"
    verdict = Verdict(promoted, reason, {**figures.as_dict(), "edges": edges.as_dict()})
    if not promoted:
        return adapter_gate.refused(offer, verdict, serving_name)
    meta: dict[str, Any] = {
        "heldout": verdict.figures,
        "source": {"via": "flower", **offer.source},
        "own_jobs": [job.pk for job in adapter_gate.own_jobs(index)],
        "radius": calibration.radius,
        "calibration": calibration.as_dict(),
    }
    return adapter_gate.publish(offer, verdict, meta, anchor, trunk.cfg)


def _earlier_text(index: int, coordizer: Any) -> Any:
    """The held-out text of the adapter jobs on central that made the kernel's kept versions (the
    held-in data when nothing was held out), or None when there were none."""
    split = adapter_gate.own_split(adapter_gate.own_jobs(index))
    own = split.held_out or split.held_in
    return token_stream(own, coordizer) if own else None
