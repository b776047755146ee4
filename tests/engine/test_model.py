"""The trunk, the KV cache and one batched forward where every row uses a different kernel."""

import pytest
import torch

from constellation.engine.config import LoRAConfig, TrunkConfig, trunk_preset
from constellation.engine.model import Adapter, KVCache, LoRABank, LoRARoute, Trunk

CFG = TrunkConfig(vocab_size=97, hidden=32, n_layers=2, n_heads=4, mlp_hidden=48, max_seq_len=64)
LORA = LoRAConfig(rank=4)


def trained_looking_adapter(seed: int) -> Adapter:
    """An adapter with non-zero B (a fresh one is the identity)."""
    ad = Adapter(CFG, LORA, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in ad.b.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return ad


@pytest.fixture
def trunk() -> Trunk:
    torch.manual_seed(0)
    return Trunk(CFG).eval()


def test_presets_have_the_designed_shapes():
    big = trunk_preset("100m")
    assert (big.hidden, big.n_layers, big.n_heads, big.vocab_size, big.basin_dim) == (
        384,
        8,
        8,
        32000,
        64,
    )
    with torch.device("meta"):
        n = Trunk(big).num_params()
    assert 20e6 < n < 26e6  # about 23M parameters with tied embeddings
    assert trunk_preset("tiny", vocab_size=1000).vocab_size == 1000
    with pytest.raises(ValueError, match="preset"):
        trunk_preset("7b")


def test_embeddings_are_tied(trunk):
    out = trunk(torch.randint(0, 97, (1, 5)))
    assert out.logits.shape == (1, 5, 97)
    assert out.hidden.shape == (1, 5, 32)
    names = [n for n, _ in trunk.named_parameters()]
    assert not any("lm_head" in n for n in names)


def test_the_kv_cache_reproduces_the_full_forward(trunk):
    idx = torch.randint(0, 97, (2, 20))
    full = trunk(idx).logits
    cache = KVCache(CFG, 2, 32)
    parts = [trunk(idx[:, :12], cache=cache).logits]
    parts += [trunk(idx[:, t : t + 1], cache=cache).logits for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.pos == 20


def test_a_left_padded_row_computes_what_it_computes_alone(trunk):
    short, long = torch.randint(0, 97, (1, 5)), torch.randint(0, 97, (1, 9))
    alone = trunk(short).logits[:, -1]
    cache = KVCache(CFG, 2, 16)
    cache.set_padding([4, 0])
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    out = trunk(batch, cache=cache, last_only=True).logits[:, -1]
    torch.testing.assert_close(out[0], alone[0], atol=1e-5, rtol=1e-5)
    nxt = torch.tensor([[3], [4]])
    step = trunk(nxt, cache=cache).logits[0, -1]
    torch.testing.assert_close(step, trunk(torch.cat([short, nxt[:1]], 1)).logits[0, -1])


def test_one_batched_forward_serves_a_different_kernel_per_row(trunk):
    bank = LoRABank(CFG, LORA, n_slots=4)
    adapters = {7: trained_looking_adapter(1), 42: trained_looking_adapter(2)}
    for k, ad in adapters.items():
        bank.load(k, ad)
    idx = torch.randint(0, 97, (3, 10))
    kernels = [7, 42, 199]  # 199 is standby: it has no adapter and uses the bare trunk
    route = LoRARoute.for_rows(bank, bank.slots_for(kernels))
    assert route is not None
    assert route.uniform is None
    mixed = trunk(idx, route=route).logits
    for row, k in enumerate(kernels):
        single = LoRARoute(adapter=adapters[k]) if k in adapters else None
        alone = trunk(idx[row : row + 1], route=single).logits[0]
        torch.testing.assert_close(mixed[row], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mixed[0], trunk(idx[:1]).logits[0], atol=1e-3)


def test_one_kernel_for_all_rows_uses_the_shared_path_with_the_same_result(trunk):
    bank = LoRABank(CFG, LORA, n_slots=3)
    bank.load(5, trained_looking_adapter(3))
    bank.load(6, trained_looking_adapter(4))
    idx = torch.randint(0, 97, (2, 6))
    uniform = LoRARoute.for_rows(bank, [1, 1])
    assert uniform is not None
    assert uniform.uniform == 1
    gathered = LoRARoute(bank=bank, slots=torch.tensor([1, 1]), uniform=None)
    torch.testing.assert_close(trunk(idx, route=uniform).logits, trunk(idx, route=gathered).logits)
    assert LoRARoute.for_rows(bank, [0, 0]) is None
    one = LoRARoute.for_rows(bank, [1])  # one kernel's route over a batch of any size
    three = torch.randint(0, 97, (3, 6))
    torch.testing.assert_close(
        trunk(three, route=one).logits, trunk(three, route=uniform).logits, atol=1e-6, rtol=1e-6
    )
    adapter = bank.adapter(6)
    torch.testing.assert_close(
        trunk(idx, route=LoRARoute(adapter=adapter)).logits,
        trunk(idx, route=LoRARoute.for_rows(bank, [2, 2])).logits,
    )
    with pytest.raises(ValueError, match="slots"):
        bank.load(8, adapter)


def test_a_fresh_adapter_is_the_bare_trunk(trunk):
    idx = torch.randint(0, 97, (1, 6))
    torch.testing.assert_close(
        trunk(idx, route=LoRARoute(adapter=Adapter(CFG, LORA))).logits, trunk(idx).logits
    )


def test_it_runs_in_bf16(trunk):
    idx = torch.randint(0, 97, (2, 8))
    ref = trunk(idx).logits
    bank = LoRABank(CFG, LORA, n_slots=2)
    bank.load(1, trained_looking_adapter(5))
    half = Trunk(CFG)
    half.load_state_dict(trunk.state_dict())
    half = half.to(torch.bfloat16).eval()
    out = half(idx)
    assert out.hidden.dtype == torch.bfloat16
    assert out.logits.dtype == torch.float32
    assert (out.logits - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    bank16 = bank.to(torch.bfloat16)
    cache = KVCache(CFG, 2, 16, dtype=torch.bfloat16)
    routed = half(idx, route=LoRARoute.for_rows(bank16, [1, 0]), cache=cache)
    assert torch.isfinite(routed.logits).all()


def test_loss_ignores_masked_targets(trunk):
    idx = torch.randint(0, 97, (2, 8))
    targets = idx.clone()
    targets[:, :4] = -100
    out = trunk(idx, targets=targets)
    assert out.loss is not None
    assert out.loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(
            out.logits[:, 4:].reshape(-1, 97), idx[:, 4:].reshape(-1)
        ).item(),
        rel=1e-5,
    )


def test_inference_packing_keeps_results_and_steps_aside_when_weights_change(trunk):
    idx = torch.randint(0, 97, (2, 7))
    ref = trunk(idx).logits
    shapes = {k: v.shape for k, v in trunk.state_dict().items()}
    trunk.optimize_for_inference()
    assert {k: v.shape for k, v in trunk.state_dict().items()} == shapes
    with torch.inference_mode():
        torch.testing.assert_close(trunk(idx).logits, ref, atol=1e-5, rtol=1e-5)
        cache = KVCache(CFG, 2, 16)
        torch.testing.assert_close(trunk(idx, cache=cache).logits, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        trunk.blocks[0].qkv.weight.mul_(2)  # e.g. an optimiser step: the packed copy is stale
        changed = trunk(idx).logits
    plain = Trunk(CFG).eval()
    plain.load_state_dict(trunk.state_dict())
    torch.testing.assert_close(changed, plain(idx).logits)
    assert not torch.allclose(changed, ref)
