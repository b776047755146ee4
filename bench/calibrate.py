"""Calibration of Φ/κ (docs/design.md §5): record them over a whole `tiny` pretraining run on the
bootstrap corpus and a healthy adapter run, and report where the seed thresholds would put them.

    python -m bench.calibrate [--steps 400] [--out calibration.json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from constellation.engine.config import LoRAConfig, trunk_preset
from constellation.engine.coordizer import Coordizer, CoordizerConfig, unigram_entropy
from constellation.engine.corpus import CorpusConfig, build_corpus
from constellation.engine.data import TokenStream
from constellation.engine.model import Adapter, Trunk
from constellation.engine.trainer import TrainConfig, Trainer

from .common import emit


def summary(readings: list[dict[str, Any]], after: int) -> dict[str, float]:
    phis = np.array([r["phi"] for r in readings if r["step"] > after])
    kappas = np.array([r["kappa"] for r in readings if r["step"] > after])
    return {
        "phi_min": round(float(phis.min()), 3),
        "phi_median": round(float(np.median(phis)), 3),
        "phi_max": round(float(phis.max()), 3),
        "kappa_min": round(float(kappas.min()), 2),
        "kappa_median": round(float(np.median(kappas)), 2),
        "kappa_max": round(float(kappas.max()), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--adapter-steps", type=int, default=100)
    ap.add_argument("--corpus-bytes", type=int, default=1_000_000)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    docs = build_corpus(CorpusConfig(max_bytes=args.corpus_bytes))
    coord = Coordizer.train(docs, CoordizerConfig(vocab_size=args.vocab))
    stream = TokenStream.from_examples(docs, coord.encode, coord.eot_id)
    train, val = stream.split(0.05)
    torch.manual_seed(0)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coord.vocab_size))
    cfg = TrainConfig(steps=args.steps, batch_size=16, seq_len=128, lr=3e-3, metrics_every=10)
    pre = Trainer(trunk, cfg, train, val).fit()
    val_loss = Trainer(trunk, cfg, train, val).evaluate(val)

    # a healthy adapter run: one kernel on a held-back slice of the corpus
    adapter = Adapter(trunk.cfg, LoRAConfig())
    acfg = TrainConfig(
        mode="adapter",
        steps=args.adapter_steps,
        batch_size=8,
        seq_len=128,
        lr=3e-3,
        metrics_every=10,
    )
    ad = Trainer(trunk, acfg, val, adapter=adapter).fit()

    record: dict[str, Any] = {
        "pretrain": pre.readings,
        "adapter": ad.readings,
        "unigram_entropy": unigram_entropy(train.ids, coord.vocab_size),
        "val_loss": val_loss,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
    for name, rs in (("pretrain", pre.readings), ("adapter", ad.readings)):
        for r in rs:
            print(
                f"# {name} step={r['step']} loss={r['loss']:.3f} phi={r['phi']:.3f} "
                f"kappa={r['kappa']:.1f} {r['regime']} {r['phase']}"
            )
    emit(
        {
            "pretrain": summary(pre.readings, after=100),
            "adapter": summary(ad.readings, after=0),
            "val_loss": round(val_loss, 3),
            "unigram_entropy": round(record["unigram_entropy"], 3),
        }
    )


if __name__ == "__main__":
    main()
