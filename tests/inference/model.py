"""A tiny real trained model (coordizer, trunk, one kernel adapter) in a data dir, made in
seconds on CPU, for the live inference tests and `bench.serve`."""

from __future__ import annotations

from pathlib import Path

from constellation.engine import (
    Adapter,
    LoRAConfig,
    TokenStream,
    TrainConfig,
    Trainer,
    Trunk,
    e8,
    save_adapter,
    save_trunk,
    trunk_preset,
)
from tests.learning import tiny

ADAPTER_KERNEL = e8.kernel_for_role("MEMORY")
CONTEXT = 1024


def make_trained_model(data_dir: Path, steps: int = 40) -> Path:
    """Write MODELS_DIR = data_dir/models with a coordizer, a pretrained tiny trunk and one
    trained kernel adapter; returns MODELS_DIR."""
    models = data_dir / "models"
    coordizer = tiny.coordizer()
    tiny.save_coordizer(models)
    stream = TokenStream.from_examples(list(tiny.corpus()), coordizer.encode, coordizer.eot_id)
    # A long context so a stream can outlast the disconnect and unload tests.
    trunk = Trunk(trunk_preset("tiny", vocab_size=coordizer.vocab_size, max_seq_len=CONTEXT))
    fast = TrainConfig(mode="pretrain", steps=steps, batch_size=2, seq_len=32, metrics_every=1000)
    Trainer(trunk, fast, stream).fit()
    save_trunk(trunk, models / "trunk")
    adapter = Adapter(trunk.cfg, LoRAConfig())
    tune = TrainConfig(mode="adapter", steps=10, batch_size=2, seq_len=32, metrics_every=1000)
    Trainer(trunk, tune, stream, adapter=adapter, kernel=ADAPTER_KERNEL).fit()
    save_adapter(adapter, trunk.cfg, models / "kernels" / str(ADAPTER_KERNEL))
    return models
