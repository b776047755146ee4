"""A tiny real trained model, made in seconds on a CPU: the tiny coordizer on a small slice of the
bootstrap corpus, a `tiny`-preset trunk pretrained on it and one trained kernel adapter.

Used by `bench.serve` and by the tests (training runners, live inference servers); nothing here
is a stand-in: every weight is trained by the engine's own `Trainer` on real text.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from . import e8
from .checkpoint import save_adapter, save_trunk
from .config import LoRAConfig, trunk_preset
from .coordizer import Coordizer, CoordizerConfig
from .corpus import CorpusConfig, build_corpus
from .data import TokenStream
from .lora import Adapter
from .model import Trunk
from .trainer import TrainConfig, Trainer

VOCAB = 512
CORPUS_BYTES = 60_000
ADAPTER_KERNEL = e8.kernel_for_role("MEMORY")
CONTEXT = 1024  # long, so a stream can outlast the disconnect and unload tests


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    return tuple(build_corpus(CorpusConfig(max_bytes=CORPUS_BYTES)))


@lru_cache(maxsize=1)
def coordizer() -> Coordizer:
    return Coordizer.train(list(corpus()), CoordizerConfig(vocab_size=VOCAB))


def save_coordizer(models_dir: Path) -> Path:
    """Put the tiny coordizer, and the tiny corpus as the bootstrap corpus, where the training
    runner looks for them (MODELS_DIR/coordizer, MODELS_DIR/bootstrap-corpus.jsonl)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / "bootstrap-corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in corpus():
            handle.write(json.dumps({"text": doc}) + "\n")
    return coordizer().save(models_dir / "coordizer")


def make_trained_model(data_dir: Path, steps: int = 40) -> Path:
    """Write MODELS_DIR = data_dir/models with the coordizer, a pretrained tiny trunk and one
    trained adapter for kernel `ADAPTER_KERNEL`; returns MODELS_DIR."""
    models = data_dir / "models"
    coord = coordizer()
    save_coordizer(models)
    stream = TokenStream.from_examples(list(corpus()), coord.encode, coord.eot_id)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coord.vocab_size, max_seq_len=CONTEXT))
    fast = TrainConfig(mode="pretrain", steps=steps, batch_size=2, seq_len=32, metrics_every=1000)
    Trainer(trunk, fast, stream).fit()
    save_trunk(trunk, models / "trunk")
    adapter = Adapter(trunk.cfg, LoRAConfig())
    tune = TrainConfig(mode="adapter", steps=10, batch_size=2, seq_len=32, metrics_every=1000)
    Trainer(trunk, tune, stream, adapter=adapter, kernel=ADAPTER_KERNEL).fit()
    save_adapter(adapter, trunk.cfg, models / "kernels" / str(ADAPTER_KERNEL))
    return models
