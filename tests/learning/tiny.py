"""Tiny real training inputs shared by the runner tests and the live training tests (the model
itself lives in the product: `constellation.engine.tiny`, also used by `bench.serve`)."""

from __future__ import annotations

from constellation.engine.tiny import VOCAB, coordizer, corpus, save_coordizer

__all__ = ["FAST_PRETRAIN", "VOCAB", "coordizer", "corpus", "save_coordizer"]

# Small and quick on a 2-core CPU (~80 steps/s with the tiny preset at vocabulary 512).
FAST_PRETRAIN = {
    "batch_size": 2,
    "seq_len": 32,
    "learning_rate": 3e-3,
    "phi_every": 10,
}
