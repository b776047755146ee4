"""Trainer overhead: the Trainer (Φ/κ every 10 steps, guards, telemetry) against a plain PyTorch
loop on the same model, data, batches and optimiser.

    python -m bench.train            # last line: one JSON object
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from constellation.engine.callbacks import TelemetryCallback, default_guards
from constellation.engine.config import trunk_preset
from constellation.engine.data import Batches, TokenStream
from constellation.engine.model import Trunk
from constellation.engine.optim import build_optimizer
from constellation.engine.trainer import TrainConfig, Trainer, lr_at

from .common import emit


def make_stream(vocab: int, n_tokens: int) -> TokenStream:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, n_tokens, dtype=np.int64)
    return TokenStream(ids, np.ones(n_tokens, dtype=bool))


def fresh_trunk(vocab: int) -> Trunk:
    torch.manual_seed(0)
    return Trunk(trunk_preset("tiny", vocab_size=vocab))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    vocab = 8000
    cfg = TrainConfig(steps=args.warmup + args.steps, batch_size=16, seq_len=128, metrics_every=10)
    stream = make_stream(vocab, 200_000)
    tokens = cfg.batch_size * cfg.seq_len * args.steps

    trunk = fresh_trunk(vocab)
    trunk.train()
    opt = build_optimizer(cfg.optimizer, trunk.parameters(), cfg.lr)
    batches = Batches(stream, cfg.batch_size, cfg.seq_len, cfg.seed)

    def plain_step(step: int) -> None:
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        x, y = batches.batch(step)
        loss = trunk(x, targets=y).loss
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trunk.parameters(), cfg.grad_clip)
        opt.step()
        float(loss.detach())

    callbacks = [*default_guards(), TelemetryCallback()]
    trainer = Trainer(fresh_trunk(vocab), cfg, stream, callbacks=callbacks)

    # interleave the two step by step, so background load on the machine hits both alike
    t_plain = t_ours = 0.0
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        plain_step(step)
        t1 = time.perf_counter()
        trainer.fit(max_steps=1)
        t2 = time.perf_counter()
        if step >= args.warmup:
            t_plain += t1 - t0
            t_ours += t2 - t1
    assert len(trainer.readings) == cfg.steps // cfg.metrics_every
    plain, ours = tokens / t_plain, tokens / t_ours

    emit(
        {
            "tokens_per_s": round(ours, 1),
            "plain_tokens_per_s": round(plain, 1),
            "overhead": round(1 - ours / plain, 4),
        },
        {
            "preset": "tiny",
            "vocab": vocab,
            "batch": cfg.batch_size,
            "seq_len": cfg.seq_len,
            "steps": args.steps,
            "threads": torch.get_num_threads(),
        },
    )


if __name__ == "__main__":
    main()
