"""Int8 weight-only trunks (issue 17, item 3): the quantisation, its product, LoRA on top, and
that training and the full-precision trunk never see the int8 copies."""

import pytest
import torch

from constellation.engine.config import LoRAConfig, TrunkConfig
from constellation.engine.generation import Request, generate
from constellation.engine.model import Adapter, Int8Weight, LoRABank, LoRARoute, Trunk
from constellation.engine.quant import dequantize_int8, quantize_int8
from constellation.engine.sampling import SamplingOptions
from constellation.engine.scheduler import Scheduler

CFG = TrunkConfig(vocab_size=97, hidden=32, n_layers=2, n_heads=4, mlp_hidden=48, max_seq_len=64)
LORA = LoRAConfig(rank=4)


def trained_looking_adapter(seed: int) -> Adapter:
    ad = Adapter(CFG, LORA, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in ad.b.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return ad


@pytest.fixture
def trunk() -> Trunk:
    torch.manual_seed(0)
    return Trunk(CFG).eval().optimize_for_inference()


def test_the_round_trip_error_is_at_most_half_a_step_per_channel():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(300, 128, generator=g) * torch.logspace(-3, 1, 300)[:, None]
    w[7] = 0.0  # an all-zero row
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (300,)
    assert int(q.abs().max()) <= 127
    amax = w.abs().amax(1)
    assert bool((scale >= amax / 127).all()), "a scale below max|w|/127 would clip"
    assert bool((scale <= amax / 127 * (1 + 2**-7) + 1e-12).all())
    torch.testing.assert_close(scale.bfloat16().float(), scale, rtol=0, atol=0)  # bf16-exact
    err = (w - dequantize_int8(q, scale)).abs()
    assert bool((err <= scale[:, None] / 2 * (1 + 1e-6)).all())
    assert int(q[7].abs().max()) == 0


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_int8_product_is_the_dequantised_matrix_times_x(rows):
    g = torch.Generator().manual_seed(rows)
    w = torch.randn(200, 96, generator=g) * 0.05
    x = torch.randn(rows, 96, generator=g)
    iw = Int8Weight.quantize(w)
    with torch.no_grad():
        y = iw.apply(x)
    assert y.dtype == torch.float32 and y.shape == (rows, 200)
    # the kernel's inputs are x in bf16 and q·s exactly; only its bf16 output is rounded
    ref = x.bfloat16().float() @ iw.dequantize().t()
    torch.testing.assert_close(y, ref, rtol=2**-8, atol=2**-8 * float(ref.abs().mean()))
    loose = x @ w.t()  # against the full-precision product: the int8 error itself
    assert float((y - loose).abs().max()) < 0.02 * float(loose.abs().max())
    with torch.no_grad():
        yb = iw.apply(x.bfloat16())
    assert yb.dtype == torch.bfloat16


def test_lora_adds_its_full_precision_delta_on_top_of_an_int8_trunk(trunk):
    bank = LoRABank(CFG, LORA, n_slots=3)
    bank.load(5, trained_looking_adapter(1))
    int8 = trunk.quantized()
    x = torch.randn(2, 4, CFG.hidden)
    route = LoRARoute.for_rows(bank, [1, 0])
    assert route is not None
    with torch.no_grad():
        for layer in range(CFG.n_layers):
            full, quant = trunk.blocks[layer], int8.blocks[layer]
            assert isinstance(quant.packed["qkv"], Int8Weight)
            for target in ("qkv", "o"):
                lin = getattr(full, target)
                d_full = full._proj(lin, x, route, target) - full._proj(lin, x, None, target)
                d_int8 = quant._proj(lin, x, route, target) - quant._proj(lin, x, None, target)
                torch.testing.assert_close(d_int8, d_full, atol=1e-6, rtol=1e-5)
                torch.testing.assert_close(d_int8, route.delta(x, layer, target))
    assert all(buf.dtype == torch.float32 for buf in bank.buffers())
    idx = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        a, b = trunk(idx, route=route).logits, int8(idx, route=route).logits
    assert not torch.equal(a, b)  # the int8 trunk does answer through its int8 copies
    torch.testing.assert_close(b, a, atol=0.05 * float(a.abs().max()), rtol=0)


def test_training_and_the_full_precision_trunk_never_see_the_int8_copies(trunk):
    idx = torch.randint(0, 97, (2, 7))
    with torch.no_grad():
        before = trunk(idx).logits
    int8 = trunk.quantized()
    assert int8.quantization == "int8" and trunk.quantization is None
    assert int8.embed is trunk.embed and int8.blocks[0].qkv.weight is trunk.blocks[0].qkv.weight
    with torch.no_grad():
        assert torch.equal(trunk(idx).logits, before)  # the twin changed nothing of the trunk
    grad = int8(idx, targets=idx)  # grad enabled: every projection is F.linear on the weights
    torch.testing.assert_close(grad.logits, trunk(idx).logits, atol=1e-6, rtol=1e-6)
    assert grad.loss is not None
    grad.loss.backward()
    assert trunk.blocks[0].qkv.weight.grad is not None
    with torch.no_grad():
        trunk.blocks[0].qkv.weight.mul_(2)  # an optimiser step: the int8 copy is stale
        plain = Trunk(CFG).eval()
        plain.load_state_dict(trunk.state_dict())
        head = int8.packed_head
        assert isinstance(head, Int8Weight)
        stale = int8(idx).logits  # falls back on the changed layer, int8 elsewhere
        assert not torch.allclose(stale, before, atol=1e-3)
        assert float((stale - plain(idx).logits).abs().max()) < 0.05 * float(stale.abs().max())


def test_quantize_names_what_it_accepts(trunk):
    with pytest.raises(ValueError, match="int8"):
        trunk.optimize_for_inference(quantize="int4")
    with pytest.raises(ValueError, match="fp32/bf16"):
        Trunk(CFG).half().optimize_for_inference(quantize="int8")


def test_an_int8_trunk_decodes_the_same_alone_and_in_the_scheduler(trunk):
    int8 = trunk.quantized()
    bank = LoRABank(CFG, LORA, n_slots=2)
    bank.load(3, trained_looking_adapter(2))
    greedy = SamplingOptions(temperature=0.0, num_predict=12)
    requests = [Request([1, 2, 3, 4], [(3, 1.0)], greedy), Request([5, 6], [(None, 1.0)], greedy)]
    alone = [generate(int8, [r], bank=bank)[0] for r in requests]
    sched = Scheduler(int8, bank, eot_id=None, max_batch=4)
    tickets = [sched.submit(r) for r in requests]
    sched.run_until_idle()
    assert [list(t) for t in tickets] == alone
    assert all(len(a) == 12 for a in alone)
