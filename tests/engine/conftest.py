"""Shared fixtures for the engine tests: a small real corpus and coordizer, built once."""

from pathlib import Path

import pytest

from constellation.engine.coordizer import Coordizer, CoordizerConfig
from constellation.engine.corpus import CorpusConfig, build_corpus


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return build_corpus(CorpusConfig(max_bytes=300_000))


@pytest.fixture(scope="session")
def coordizer(corpus: list[str]) -> Coordizer:
    return Coordizer.train(corpus, CoordizerConfig(vocab_size=1024))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
