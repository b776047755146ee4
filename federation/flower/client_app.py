"""The Flower ClientApp (docs/flower.md): runs on an edge, in the process its SuperNode starts
for each training message, with the edge's settings and database. No text leaves the edge: it
trains the kernel's B on the edge's own high-value learnings and answers with B, its example
count and its training loss.

The data are `federation.patterns.high_value_patterns(kernels=[k])` (corrections and approved
answers of value ≥ 0.7, anonymised), each a prompt → completion record as the learning loop
trains on (`learning.improve`); the window and learning rate are the loop's improvement
hyperparameters, the steps central's QIG_FLOWER_LOCAL_STEPS; the trainer is the engine's, with
the adapter's A frozen (FFA-LoRA: `federation.flower.ffa`). A kernel the edge does not hold, or
one it has no learnings for, is answered with 0 examples (the round goes on without it); a trunk
other than central's is an error reply. With enough learnings, some are held out of training for
the federated evaluation (`evaluate`, `federation.flower.evaluation`).
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.flower import evaluation, ffa
from federation.flower.setup import django_setup
from federation.flower.strategy import LOSS_KEY, WEIGHT_KEY

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    django_setup()
    config = dict(msg.content.config_records["config"])
    a = {k: v.numpy() for k, v in msg.content.array_records["frozen"].items()}
    b = {k: v.numpy() for k, v in msg.content.array_records["arrays"].items()}
    new_b, examples, loss = train_b(a, b, config)
    arrays = ArrayRecord(
        {k: Array(np.ascontiguousarray(v, dtype=np.float32)) for k, v in new_b.items()}
    )
    metrics = MetricRecord(
        {WEIGHT_KEY: int(examples), LOSS_KEY: loss if math.isfinite(loss) else 0.0}
    )
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation (`federation.flower.evaluation`): the served version and the average
    measured on this edge's own learnings for the kernel; numbers only in the reply."""
    django_setup()
    config = dict(msg.content.config_records["config"])
    kernel = int(config["kernel"])  # type: ignore[arg-type]
    arrays = {key: {k: v.numpy() for k, v in msg.content.array_records[key].items()}
              for key in ("frozen", "before", "after")}  # fmt: skip
    figures = evaluation.measure(
        arrays["frozen"], arrays["before"], arrays["after"], config, patterns_for(kernel)
    )
    return Message(evaluation.reply_content(figures), reply_to=msg)


def patterns_for(kernel: int) -> list[Any]:
    """The edge's high-value learnings for the kernel (none for a kernel an edge does not hold)."""
    from django.conf import settings

    from federation import edge
    from federation.patterns import high_value_patterns

    if settings.FEDERATION == "edge" and kernel not in edge.held():
        return []
    return high_value_patterns(kernels=[kernel])


def records_for(kernel: int) -> list[dict[str, str]]:
    """What the edge trains on for the kernel: its learnings less those it holds out for the
    federated evaluation (`evaluation.split_records`)."""
    training, _, _ = evaluation.split_records(patterns_for(kernel))
    return evaluation.records(training)


def train_b(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], int, float]:
    """(the trained B, the examples it learned from, the mean training loss). B comes back
    unchanged with 0 examples when the edge has nothing to learn for the kernel."""
    import torch

    from constellation.engine import Trainer
    from constellation.engine.optim import build_optimizer
    from learning import runs
    from learning.datasets import published_coordizer, token_stream
    from learning.improve import improvement_hyperparameters
    from learning.services import validate_hyperparameters

    kernel = int(config["kernel"])
    records = records_for(kernel)
    if not records:
        return b, 0, math.nan
    trunk, lora = evaluation.round_trunk(config)
    adapter = ffa.assemble(trunk.cfg, lora, a, b)
    asked = {**improvement_hyperparameters(records), "steps": int(config["steps"])}
    hp = validate_hyperparameters({**asked, "seed": int(config.get("seed", 0)) % 2**31})
    stream = token_stream(records, published_coordizer())
    torch.manual_seed(hp["seed"])
    trainer = Trainer(
        trunk, runs.train_config("adapter", hp), stream, adapter=adapter, kernel=kernel
    )
    trained = ffa.freeze_a(adapter)  # A stays the round's shared A: only B learns
    trainer.optimizer = build_optimizer(hp["optimizer"], trained, hp["learning_rate"])
    result = trainer.fit()
    after_a, new_b = ffa.split(adapter)
    if ffa.max_abs_difference(after_a, a) != 0.0:
        raise RuntimeError("A moved during training: FFA-LoRA's average would not be exact")
    losses = [x for x in result.losses if math.isfinite(x)]
    return new_b, len(records), fmean(losses) if losses else math.nan
