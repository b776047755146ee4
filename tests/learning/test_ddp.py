"""The engine's data-parallel hook (`Trainer(shard=…, wrap=…)`), in-process on the CPU. The real
two-process launch under torchrun is tests/live/test_ddp.py."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from constellation.engine import TokenStream, TrainConfig, Trainer, Trunk, trunk_preset
from learning.ddp import RankSync
from tests.learning import tiny


def _trainer(**kwargs) -> Trainer:
    coordizer = tiny.coordizer()
    stream = TokenStream.from_examples(tiny.corpus(), coordizer.encode, coordizer.eot_id)
    torch.manual_seed(0)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coordizer.vocab_size))
    config = TrainConfig(steps=6, batch_size=2, seq_len=32, metrics_every=3)
    return Trainer(trunk, config, stream, **kwargs)


def test_each_rank_trains_its_own_shard_of_the_data() -> None:
    solo, rank0, rank1 = _trainer(), _trainer(shard=(0, 2)), _trainer(shard=(1, 2))
    for trainer in (solo, rank0, rank1):
        trainer.fit(max_steps=1)
    assert solo.losses == rank0.losses  # step 0 of rank 0 is batch 0
    assert rank1.losses != rank0.losses  # rank 1 reads batch 1 at step 0


def test_a_wrapped_world_of_one_trains_exactly_like_the_plain_loop(tmp_path: Path) -> None:
    plain = _trainer()
    plain.fit()
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        sync = RankSync(0, 1, "cpu")
        wrapped = _trainer(shard=(0, 1), wrap=DistributedDataParallel, callbacks=[sync])
        assert isinstance(wrapped.forward_module, DistributedDataParallel)
        wrapped.fit()
    finally:
        dist.destroy_process_group()
    assert wrapped.losses == plain.losses
    assert [r["phi"] for r in wrapped.readings] == [r["phi"] for r in plain.readings]
    assert sync.ranks == [
        {"rank": 0, "pid": sync.ranks[0]["pid"], "host": sync.ranks[0]["host"], "device": "cpu"}
    ]
