"""Tiny real training inputs shared by the runner tests and the live training tests."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from constellation.engine import Coordizer, CoordizerConfig, CorpusConfig, build_corpus

VOCAB = 512

# Small and quick on a 2-core CPU (~80 steps/s with the tiny preset at vocabulary 512).
FAST_PRETRAIN = {
    "batch_size": 2,
    "seq_len": 32,
    "learning_rate": 3e-3,
    "phi_every": 10,
}


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    return tuple(build_corpus(CorpusConfig(max_bytes=60_000)))


@lru_cache(maxsize=1)
def coordizer() -> Coordizer:
    return Coordizer.train(list(corpus()), CoordizerConfig(vocab_size=VOCAB))


def save_coordizer(models_dir: Path) -> Path:
    """Put a tiny trained coordizer, and the tiny corpus as the bootstrap corpus, where the
    runner looks for them."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / "bootstrap-corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in corpus():
            handle.write(json.dumps({"text": doc}) + "\n")
    return coordizer().save(models_dir / "coordizer")
