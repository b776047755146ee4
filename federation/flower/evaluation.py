"""Federated evaluation (docs/flower.md, "Judging an average where the data is"): after a kernel's
last Flower round, central asks the round's edges to measure the average on their own learnings,
because those never leave the edges.

- **Edge** (`measure`, in the ClientApp's `evaluate` message): the kernel's learnings are split
  once, the same way for training and for evaluation (`split_records`): with at least
  `HOLD_OUT_FROM` of them every `HOLD_OUT_EVERY`-th (in digest order) is held out of training and
  measured; with fewer, all are measured (held in, and said so). It returns its loss with the
  served version ("before", the round's start: shared A, starting B) and with the average
  ("after", shared A, averaged B), the example count, and the Fisher–Rao distances of the
  measured learnings' prompts to the kernel's anchor (for the radius), their median length and
  whether they are chat prompts. Numbers only: no text leaves the edge.
- **Central** (`ask_edges`): sends the message to the edges of the round, and combines the replies
  (`combine`) into one `learning.federated_gate.EdgeEvaluation`: losses weighted by examples; an
  edge that fails, does not answer in time, or has no learnings is listed with why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import median
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

HOLD_OUT_FROM = 5  # an edge with at least this many learnings for a kernel holds some out …
HOLD_OUT_EVERY = 5  # … every 5th, in digest order
EXAMPLES, BEFORE, AFTER = "num-examples", "loss-before", "loss-after"
HELDOUT, CHARS, CHAT, DISTANCES = "heldout", "prompt-chars", "chat", "distances"


def split_records(patterns: list[Any]) -> tuple[list[Any], list[Any], bool]:
    """(what trains, what is measured, whether that is held out): `patterns` in digest order."""
    ordered = sorted(patterns, key=lambda p: p.digest)
    if len(ordered) < HOLD_OUT_FROM:
        return ordered, ordered, False
    held = [p for i, p in enumerate(ordered) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    kept = [p for i, p in enumerate(ordered) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    return kept, held, True


def records(patterns: Iterable[Any]) -> list[dict[str, str]]:
    return [{"prompt": p.prompt, "completion": p.completion} for p in patterns]


# ---- the edge ---------------------------------------------------------------------------------
def round_trunk(config: dict[str, Any]) -> tuple[Any, Any]:
    """(this edge's trunk, the round's LoRAConfig) for a message's config; ValueError when the
    edge's trunk is not central's (the reply is then an error: the edge is out of the round)."""
    from constellation import published
    from constellation.engine import LoRAConfig

    mine = published.trunk_fingerprint()
    if mine != config.get("trunk"):
        raise ValueError(
            f"this edge's trunk ({mine}) is not central's ({config.get('trunk')}): "
            "apply central's update bundle first"
        )
    lora = LoRAConfig(rank=int(config["rank"]), alpha=float(config["alpha"]),
                      targets=tuple(str(config["targets"]).split(",")))  # fmt: skip
    return published.load_trunk(), lora


def measure(
    a: dict[str, np.ndarray],
    before_b: dict[str, np.ndarray],
    after_b: dict[str, np.ndarray],
    config: dict[str, Any],
    patterns: list[Any],
) -> dict[str, Any]:
    """The edge's figures for the kernel (see the module's docstring); 0 examples when it has no
    learnings for it."""
    from federation.flower import ffa
    from learning import promotion
    from learning.datasets import published_coordizer, token_stream
    from learning.improve import improvement_hyperparameters

    _, measured, heldout = split_records(patterns)
    if not measured:
        return {EXAMPLES: 0}
    trunk, lora = round_trunk(config)
    coordizer = published_coordizer()
    measured_records = records(measured)
    hp = improvement_hyperparameters(measured_records)
    stream = token_stream(measured_records, coordizer)
    losses = []
    for b in (before_b, after_b):
        adapter = ffa.assemble(trunk.cfg, lora, a, b).to(trunk.device)
        losses.append(promotion.stream_loss(trunk, stream, adapter, hp))
    prompts = [r["prompt"] for r in measured_records]
    anchor = np.asarray([float(v) for v in config["anchor"]])
    found = promotion.distances(anchor, coordizer.text_basins(prompts))
    return {
        EXAMPLES: len(measured_records),
        BEFORE: losses[0],
        AFTER: losses[1],
        HELDOUT: heldout,
        CHARS: int(median(len(p) for p in prompts)),
        CHAT: all(p.endswith(promotion.CHAT_END) for p in prompts),
        DISTANCES: [float(d) for d in found],
    }


def reply_content(figures: dict[str, Any]) -> RecordDict:
    """The edge's figures as its reply: the scalars in a MetricRecord, the distances beside."""
    scalars = {EXAMPLES: int(figures.get(EXAMPLES, 0))}
    for key in (BEFORE, AFTER):
        value = figures.get(key)
        if isinstance(value, float) and math.isfinite(value):
            scalars[key] = value  # type: ignore[assignment]
    for key in (HELDOUT, CHAT):
        if key in figures:
            scalars[key] = int(bool(figures[key]))
    if CHARS in figures:
        scalars[CHARS] = int(figures[CHARS])
    content = RecordDict({"metrics": MetricRecord(scalars)})  # type: ignore[arg-type]
    # (a record holds no empty list; the distances of an edge with no examples are never read)
    content["shape"] = ConfigRecord({DISTANCES: list(figures.get(DISTANCES, [])) or [0.0]})
    return content


# ---- central ----------------------------------------------------------------------------------
def ask_edges(
    grid: Any,
    nodes: dict[int, str],
    a: ArrayRecord,
    before_b: ArrayRecord,
    after_b: ArrayRecord,
    config: ConfigRecord,
    timeout: float,
) -> Any:
    """Send the evaluate message to `nodes` (node id → edge name) and combine their replies."""
    content = RecordDict({"frozen": a, "before": before_b, "after": after_b, "config": config})
    messages = [
        Message(content=content, dst_node_id=node, message_type=MessageType.EVALUATE)
        for node in sorted(nodes)
    ]  # fmt: skip (one payload for all, as Flower's FedAvg)
    replies = list(grid.send_and_receive(messages, timeout=timeout)) if messages else []
    return combine(nodes, replies)


def combine(nodes: dict[int, str], replies: list[Message]) -> Any:
    """One `EdgeEvaluation` from the edges' replies (losses weighted by their examples)."""
    from learning.federated_gate import EdgeEvaluation

    got = {m.metadata.src_node_id: m for m in replies}
    edges: list[dict[str, Any]] = []
    used: list[tuple[int, float, float, bool, int, bool, list[float]]] = []
    for node, name in sorted(nodes.items()):
        reply = got.get(node)
        if reply is None:
            edges.append({"edge": name, "why": "no reply within the round's timeout"})
            continue
        if reply.has_error():
            edges.append(
                {"edge": name, "why": f"error {reply.error.code}: {reply.error.reason}"[:300]}
            )
            continue
        said = reply.content.metric_records.get("metrics", MetricRecord())
        examples, before, after = said.get(EXAMPLES, 0), said.get(BEFORE), said.get(AFTER)
        if not isinstance(examples, int) or examples <= 0:
            edges.append({"edge": name, "why": "no learnings for this kernel"})
            continue
        if not isinstance(before, float) or not isinstance(after, float):
            edges.append({"edge": name, "why": "its loss could not be measured"})
            continue
        shape = reply.content.config_records.get("shape", ConfigRecord())
        distances = [float(d) for d in shape.get(DISTANCES, [])]  # type: ignore[union-attr]
        heldout, chat = bool(said.get(HELDOUT, 0)), bool(said.get(CHAT, 1))
        used.append((examples, before, after, heldout, int(said.get(CHARS, 0)), chat, distances))  # type: ignore[arg-type]
        edges.append({"edge": name, "examples": examples, "before": before, "after": after,
                      "heldout": heldout})  # fmt: skip
    total = sum(u[0] for u in used)
    if not total:
        return EdgeEvaluation(0, None, None, False, edges=edges)
    return EdgeEvaluation(
        examples=total,
        before=sum(u[0] * u[1] for u in used) / total,
        after=sum(u[0] * u[2] for u in used) / total,
        heldout=all(u[3] for u in used),
        distances=[d for u in used for d in u[6]],
        prompt_chars=int(median([u[4] for u in used for _ in range(u[0])])),
        chat=all(u[5] for u in used),
        edges=edges,
    )
