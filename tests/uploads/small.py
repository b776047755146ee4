"""A small real coordizer for the upload tests (trained once per test process, ~seconds)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from constellation.engine import Coordizer, CoordizerConfig, CorpusConfig, build_corpus


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    return tuple(build_corpus(CorpusConfig(max_bytes=60_000)))


@lru_cache(maxsize=1)
def coordizer() -> Coordizer:
    return Coordizer.train(list(corpus()), CoordizerConfig(vocab_size=512))


def save_coordizer(models_dir: Path) -> Path:
    return coordizer().save(models_dir / "coordizer")
