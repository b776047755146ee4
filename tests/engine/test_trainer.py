"""Trainer: exact resume, guards and recovery ladder, telemetry, data formats, optimiser."""

import json

import pytest
import torch

from constellation.engine.callbacks import (
    Callback,
    CollapseGuard,
    GuardConfig,
    RecoveryLadder,
    TelemetryCallback,
    default_guards,
)
from constellation.engine.config import LoRAConfig, TrunkConfig
from constellation.engine.data import Batches, TokenStream, read_jsonl
from constellation.engine.generation import Request, generate
from constellation.engine.model import Adapter, Trunk
from constellation.engine.optim import DiagonalFisher, build_optimizer
from constellation.engine.trainer import TrainConfig, Trainer, latest_checkpoint

SMALL = {"hidden": 32, "n_layers": 2, "n_heads": 4, "mlp_hidden": 64, "max_seq_len": 64}


@pytest.fixture(scope="module")
def stream(coordizer, corpus) -> TokenStream:
    return TokenStream.from_examples(corpus[:60], coordizer.encode, coordizer.eot_id)


def small_trunk(vocab: int) -> Trunk:
    torch.manual_seed(0)
    return Trunk(TrunkConfig(vocab_size=vocab, **SMALL))


class Kill(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer, info):
        if info.step == self.at:
            raise RuntimeError("worker killed")
        return []


def run(coordizer, stream, tmp, callbacks, **cfg):
    config = TrainConfig(**{"batch_size": 4, "seq_len": 32, "metrics_every": 10, "lr": 3e-3, **cfg})
    return Trainer(
        small_trunk(coordizer.vocab_size),
        config,
        stream,
        callbacks=callbacks,
        checkpoint_dir=tmp,
    )


def guards():
    return default_guards(GuardConfig(warmup_steps=1000))


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(coordizer, stream, tmp_path):
    full = run(coordizer, stream, tmp_path / "a", [*guards(), TelemetryCallback()], steps=60)
    expected = full.fit().losses
    assert len(expected) == 60

    killed = run(coordizer, stream, tmp_path / "b", [*guards(), Kill(55)], steps=60)
    with pytest.raises(RuntimeError, match="killed"):
        killed.fit()
    ckpt = latest_checkpoint(tmp_path / "b")
    assert ckpt is not None
    assert ckpt.name == "step_0000050"
    for name in ("weights.safetensors", "optimizer.pt", "rng.pt", "state.json"):
        assert (ckpt / name).is_file()
    assert json.loads((ckpt / "state.json").read_text())["data_cursor"] == 50

    resumed = run(coordizer, stream, tmp_path / "b", guards(), steps=60)
    resumed.load_checkpoint(ckpt)
    assert resumed.step == 50
    result = resumed.fit()
    assert result.losses == expected  # bit for bit, including steps 51..60
    assert result.status == "completed"


def test_collapse_pauses_the_job_with_a_reason(coordizer, stream, tmp_path):
    cfg = GuardConfig(warmup_steps=0, collapse_below=1.0, collapse_patience=3)
    tr = run(coordizer, stream, None, [CollapseGuard(cfg)], steps=20, metrics_every=1)
    result = tr.fit()
    assert result.status == "paused"
    assert result.step == 3
    assert "collapse" in result.reason
    assert [e["kind"] for e in result.events] == ["pause"]


def test_the_recovery_ladder_climbs_and_reports_each_action(coordizer, stream):
    cfg = GuardConfig(breakdown_at=0.0, light_sleep_from=2, deep_sleep_from=4, mushroom_above=5)
    telemetry = TelemetryCallback()
    tr = run(coordizer, stream, None, [RecoveryLadder(cfg), telemetry], steps=7, metrics_every=1)
    result = tr.fit()
    kinds = [e["kind"] for e in result.events]
    assert kinds == [
        "cooldown",
        "light_sleep",
        "light_sleep",
        "deep_sleep",
        "deep_sleep",
        "mushroom",
        "mushroom",
    ]
    assert tr.lr_scale == 0.5
    assert result.events[3]["detail"]["pruned"] > 0
    assert [a["kind"] for a in telemetry.actions] == kinds
    rec = telemetry.records[-1]
    assert set(rec) >= {
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "phi",
        "kappa",
        "regime",
        "phase",
    }
    assert rec["regime"] == "breakdown" or rec["phi"] < 0.8  # the measured value, unrescaled
    assert rec["step"] == 7
    assert rec["tokens_per_s"] > 0


def test_adapter_mode_trains_only_the_adapter(coordizer, stream):
    trunk = small_trunk(coordizer.vocab_size)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    adapter = Adapter(trunk.cfg, LoRAConfig(rank=4))
    cfg = TrainConfig(mode="adapter", steps=5, batch_size=4, seq_len=32, lr=1e-2)
    Trainer(trunk, cfg, stream, adapter=adapter).fit()
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, before[k]), f"trunk weight {k} changed in adapter mode"
    assert any(p.abs().sum() > 0 for p in adapter.b.values())
    with pytest.raises(ValueError, match="adapter"):
        Trainer(trunk, cfg, stream)


def test_data_formats_mask_what_is_not_learned(coordizer, tmp_path):
    def enc(s):
        return coordizer.encode(s)

    eot = coordizer.eot_id
    pc = TokenStream.from_examples([{"prompt": "Q: hi", "completion": " A: yo"}], enc, eot)
    n_prompt = len(enc("Q: hi"))
    assert not pc.mask[:n_prompt].any()
    assert pc.mask[n_prompt:].all()
    chat = TokenStream.from_examples(
        [{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}],
        enc,
        eot,
    )
    assert 0 < chat.mask.sum() < len(chat)
    with pytest.raises(ValueError, match="example"):
        TokenStream.from_examples([{"foo": 1}], enc, eot)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=":2:"):
        read_jsonl(bad)
    stream = TokenStream.from_examples(["abc " * 200], enc, eot)
    b = Batches(stream, 4, 16, seed=1)
    x, y = b.batch(3)
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(b.batch(3)[0], x)


def test_diagonal_fisher_is_the_damped_natural_gradient():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = DiagonalFisher([p], lr=0.1, beta=0.5, momentum=0.0, damping=0.01, power=1.0)
    p.grad = torch.tensor([0.5, -1.0])
    opt.step()
    fisher = p.grad**2  # bias-corrected EMA after one step is g²
    expected = torch.tensor([1.0, -2.0]) - 0.1 * p.grad / (fisher + 0.01)
    torch.testing.assert_close(p.detach(), expected)
    # it minimises a badly scaled quadratic
    w = torch.nn.Parameter(torch.tensor([3.0, 3.0]))
    opt = DiagonalFisher([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = 100 * w[0] ** 2 + 0.01 * w[1] ** 2
        loss.backward()
        opt.step()
    assert w.abs().max() < 0.1
    assert isinstance(build_optimizer("adamw", [w], 1e-3), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer("sgd", [w], 1e-3)


def test_trunks_and_adapters_round_trip_through_files(coordizer, stream, tmp_path):
    from constellation.engine.checkpoint import (
        adapter_from_checkpoint,
        load_adapter,
        load_trunk,
        save_adapter,
        save_trunk,
        trunk_from_checkpoint,
    )

    tr = run(coordizer, stream, tmp_path / "pre", [], steps=3, checkpoint_every=50)
    result = tr.fit()
    assert result.checkpoint is not None
    idx = torch.randint(0, coordizer.vocab_size, (1, 8))
    tr.trunk.eval()
    ref = tr.trunk(idx).logits
    assert torch.equal(trunk_from_checkpoint(result.checkpoint)(idx).logits, ref)
    save_trunk(tr.trunk, tmp_path / "trunk")
    assert torch.equal(load_trunk(tmp_path / "trunk")(idx).logits, ref)

    adapter = Adapter(tr.trunk.cfg, LoRAConfig(rank=4))
    cfg = TrainConfig(mode="adapter", steps=2, batch_size=4, seq_len=32)
    res = Trainer(tr.trunk, cfg, stream, adapter=adapter, checkpoint_dir=tmp_path / "ad").fit()
    assert res.checkpoint is not None
    again = adapter_from_checkpoint(res.checkpoint)
    save_adapter(adapter, tr.trunk.cfg, tmp_path / "adapter")
    loaded, _ = load_adapter(tmp_path / "adapter")
    for name, p in adapter.state_dict().items():
        assert torch.equal(again.state_dict()[name], p)
        assert torch.equal(loaded.state_dict()[name], p)


def test_an_adapter_job_over_several_kernels_moves_each_anchor(coordizer, stream, tmp_path):
    from constellation.engine import e8
    from constellation.engine.trainer import train_kernels

    trunk = small_trunk(coordizer.vocab_size)
    kernels = e8.preset_kernels("minimal")
    adapters = {k: Adapter(trunk.cfg, LoRAConfig(rank=2), seed=k) for k in kernels}
    basin = coordizer.basin_of_ids(stream.ids[:2000].tolist())
    cfg = TrainConfig(mode="adapter", steps=3, batch_size=2, seq_len=16, checkpoint_every=2)
    results = train_kernels(
        trunk,
        adapters,
        cfg,
        stream,
        anchors={k: e8.anchor(k) for k in kernels},
        data_basin=basin,
        checkpoint_dir=tmp_path,
    )
    assert sorted(results) == sorted(kernels)
    for k, r in results.items():
        assert r.status == "completed"
        assert r.anchor_update is not None
        assert r.anchor_update.kernel == k
        assert (tmp_path / str(k) / "LATEST").is_file()
    too_big = Request([coordizer.vocab_size + 5])
    with pytest.raises(ValueError, match="prompt"):
        generate(trunk, [too_big])
