"""Flower's FedAvg for FFA-LoRA (docs/flower.md): each round's message carries the round's
starting B (`arrays`, what is trained and averaged) and the frozen, shared A (`frozen`); the
replies' B are averaged by Flower's FedAvg, weighted by their `num-examples`, over the valid
replies only.

A round asks the connected SuperNodes of nodes still on central's allow-list (at least
`min_edges`, `fraction` of them when that is more), waiting up to `wait_s` for enough of them.
A reply that is an error (the ClientApp failed, Flower's "node unavailable" for a SuperNode that
stopped heart-beating), that never came (the round's timeout), or that trained on no examples
counts as that edge dropping out: the round goes on with the others (Flower's accept-failures
behaviour), and `on_round` records who was in and who was out, and why.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

WEIGHT_KEY = "num-examples"
LOSS_KEY = "train-loss"


class NotEnoughEdges(RuntimeError):
    pass


@dataclass
class RoundReplies:
    """One Flower round: the replies used, and the figures `on_round` records."""

    server_round: int
    used: list[tuple[str, Message]] = field(default_factory=list)  # (edge, reply)
    edges_in: list[dict[str, Any]] = field(default_factory=list)
    edges_out: list[dict[str, Any]] = field(default_factory=list)


class ExactFedAvg(FedAvg):
    def __init__(
        self,
        *,
        frozen: ArrayRecord,
        allowed: Callable[[], dict[int, str]],
        min_edges: int,
        fraction: float,
        wait_s: float,
        on_round: Callable[[RoundReplies, ArrayRecord | None, MetricRecord | None], None],
    ) -> None:
        super().__init__(
            fraction_train=fraction,
            fraction_evaluate=0.0,  # (the final average only: `evaluation.ask_edges`)
            min_train_nodes=min_edges,
            min_available_nodes=min_edges,
            weighted_by_key=WEIGHT_KEY,
        )
        self.frozen = frozen
        self.allowed = allowed
        self.wait_s = wait_s
        self.on_round = on_round
        self.asked: dict[int, dict[int, str]] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        deadline = time.monotonic() + self.wait_s
        while True:
            names = self.allowed()
            online = sorted(n for n in grid.get_node_ids() if n in names)
            if len(online) >= self.min_train_nodes:
                break
            if time.monotonic() >= deadline:
                raise NotEnoughEdges(
                    f"only {len(online)} of the {self.min_train_nodes} edge(s) needed were "
                    f"connected to the SuperLink after {self.wait_s:.0f} s "
                    f"(connected: {', '.join(names[n] for n in online) or 'none'})"
                )
            time.sleep(1.0)
        size = min(len(online), max(int(len(online) * self.fraction_train), self.min_train_nodes))
        chosen = sorted(random.sample(online, size))
        self.asked[server_round] = {n: names[n] for n in chosen}
        config["server-round"] = server_round
        record = RecordDict(
            {self.arrayrecord_key: arrays, "frozen": self.frozen, self.configrecord_key: config}
        )
        return self._construct_messages(record, chosen, MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        asked = self.asked.get(server_round, {})
        got = {m.metadata.src_node_id: m for m in replies}
        figures = RoundReplies(server_round)
        for node_id, name in asked.items():
            reply = got.get(node_id)
            if reply is None:
                figures.edges_out.append(
                    {"edge": name, "why": "no reply within the round's timeout"}
                )
                continue
            if reply.has_error():
                why = f"error {reply.error.code}: {reply.error.reason}"[:300]
                figures.edges_out.append({"edge": name, "why": why})
                continue
            said = next(iter(reply.content.metric_records.values()), MetricRecord())
            examples, loss = said.get(WEIGHT_KEY, 0), said.get(LOSS_KEY)
            if not isinstance(examples, int | float) or examples <= 0:
                figures.edges_out.append({"edge": name, "why": "no examples for this kernel"})
                continue
            said_loss = float(loss) if isinstance(loss, int | float) else None
            figures.edges_in.append({"edge": name, "examples": int(examples), "loss": said_loss})
            figures.used.append((name, reply))
        arrays: ArrayRecord | None = None
        metrics: MetricRecord | None = None
        if figures.used:
            arrays, metrics = super().aggregate_train(server_round, [m for _, m in figures.used])
        self.on_round(figures, arrays, metrics)
        return arrays, metrics
