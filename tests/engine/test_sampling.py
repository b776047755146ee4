"""Sampling options, seeded determinism, mixtures and the streaming iterator."""

import pytest
import torch

from constellation.engine.config import LoRAConfig, TrunkConfig
from constellation.engine.generation import DecodeStats, Request, generate, stream_reply
from constellation.engine.model import Adapter, LoRABank, Trunk
from constellation.engine.sampling import SamplingOptions, filter_logits, sample_next

CFG = TrunkConfig(vocab_size=97, hidden=32, n_layers=2, n_heads=4, mlp_hidden=48, max_seq_len=64)
LORA = LoRAConfig(rank=4)


@pytest.fixture
def trunk() -> Trunk:
    torch.manual_seed(0)
    t = Trunk(CFG).eval()
    with torch.no_grad():  # sharper logits than the 0.02-std init, so choices are not flat
        t.embed.weight.mul_(5)
    return t


def bank_with(*kernels: int) -> LoRABank:
    bank = LoRABank(CFG, LORA, n_slots=len(kernels) + 1)
    for k in kernels:
        ad = Adapter(CFG, LORA, seed=k)
        g = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for p in ad.b.values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        bank.load(k, ad)
    return bank


def detok(ids):
    return "".join(chr(65 + i % 26) if i < 90 else "é"[: i % 2] or "\u00e9" for i in ids)


def test_identical_seed_gives_identical_output_whatever_the_batch(trunk):
    opts = SamplingOptions(temperature=1.0, top_k=50, top_p=0.95, seed=123, num_predict=20)
    alone = generate(trunk, [Request([1, 2, 3], options=opts)])[0]
    again = generate(trunk, [Request([1, 2, 3], options=opts)])[0]
    other = SamplingOptions(temperature=1.0, top_k=50, top_p=0.95, seed=7, num_predict=20)
    batched = generate(trunk, [Request([5, 6], options=other), Request([1, 2, 3], options=opts)])
    assert alone == again == batched[1]
    assert len(alone) == 20
    assert generate(trunk, [Request([1, 2, 3], options=other)])[0] != alone


def test_greedy_is_argmax_and_top_k_one_equals_greedy(trunk):
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=8)
    out = generate(trunk, [Request([4, 5], options=greedy)])[0]
    seq = [4, 5]
    for tok in out:
        assert tok == int(trunk(torch.tensor([seq])).logits[0, -1].argmax())
        seq.append(tok)
    k1 = SamplingOptions(temperature=1.5, top_k=1, repeat_penalty=1.0, seed=9, num_predict=8)
    assert generate(trunk, [Request([4, 5], options=k1)])[0] == out


def test_filters():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    kept = lambda **kw: (filter_logits(logits, SamplingOptions(**kw)) > -1e30).tolist()  # noqa: E731
    assert kept(top_k=2, top_p=1.0) == [True, True, False, False, False]
    assert kept(top_k=0, top_p=0.5) == [True, False, False, False, False]
    assert kept(top_k=0, top_p=0.8) == [True, True, False, False, False]
    assert kept(top_k=0, top_p=1.0, min_p=0.3) == [True, True, False, False, False]
    assert kept(top_k=0, top_p=1.0) == [True] * 5


def test_repeat_penalty_discourages_recent_tokens():
    logits = torch.tensor([2.0, 1.9, -1.0])
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.5, repeat_last_n=2)
    gen = torch.Generator()
    assert sample_next(logits, [0], greedy, gen) == 1
    assert sample_next(logits, [0, 2, 2], greedy, gen) == 0  # 0 is older than repeat_last_n
    no_pen = SamplingOptions(temperature=0, repeat_penalty=1.5, repeat_last_n=0)
    assert sample_next(logits, [0], no_pen, gen) == 0


def test_options_from_ollama():
    opts = SamplingOptions.from_ollama(
        {"temperature": 0.2, "top_k": 5, "seed": 4, "stop": "\n", "num_ctx": 2048}
    )
    assert (opts.temperature, opts.top_k, opts.seed, opts.stop) == (0.2, 5, 4, ["\n"])
    with pytest.raises(ValueError, match="temperature"):
        SamplingOptions.from_ollama({"temperature": "hot"})
    with pytest.raises(ValueError, match="top_p"):
        SamplingOptions.from_ollama({"top_p": 0})
    with pytest.raises(ValueError, match="num_predict"):
        SamplingOptions(num_predict=-5)


def test_end_of_text_stops_and_num_predict_limits(trunk):
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=12)
    first = generate(trunk, [Request([4, 5], options=greedy)])[0]
    eot = first[3]
    stopped = generate(trunk, [Request([4, 5], options=greedy)], eot_id=eot)[0]
    assert stopped == first[: first.index(eot)]
    assert len(generate(trunk, [Request([4, 5], options=SamplingOptions(num_predict=3))])[0]) == 3


def test_a_mixture_with_all_weight_on_one_kernel_is_that_kernel(trunk):
    bank = bank_with(11, 12)
    opts = SamplingOptions(temperature=0.9, seed=5, num_predict=10)
    single = generate(trunk, [Request([1, 2], [(11, 1.0)], opts)], bank=bank)[0]
    mix = generate(trunk, [Request([1, 2], [(11, 1.0), (12, 0.0)], opts)], bank=bank)[0]
    both = generate(trunk, [Request([1, 2], [(11, 0.5), (12, 0.5)], opts)], bank=bank)[0]
    assert single == mix
    assert len(both) == 10
    other = generate(trunk, [Request([1, 2], [(12, 1.0)], opts)], bank=bank)[0]
    assert other != single


def test_rows_on_different_kernels_generate_what_they_generate_alone(trunk):
    bank = bank_with(11, 12)
    opts = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=10)
    reqs = [Request([1, 2, 3], [(k, 1.0)], opts) for k in (11, 12, None)]
    together = generate(trunk, reqs, bank=bank)
    for r, out in zip(reqs, together, strict=True):
        assert generate(trunk, [r], bank=bank)[0] == out


def test_streaming_joins_to_the_reply_and_hides_stop_strings(trunk):
    opts = SamplingOptions(temperature=0.8, seed=3, num_predict=30)
    full = detok(generate(trunk, [Request([1, 2], options=opts)])[0])
    chunks = list(stream_reply(trunk, detok, [1, 2], opts))
    assert "".join(c.text for c in chunks) == full
    assert chunks[-1].done
    assert chunks[-1].done_reason == "length"
    assert isinstance(chunks[-1].stats, DecodeStats)
    assert chunks[-1].stats.generated_tokens == 30
    stop = full[5:7]
    opts_stop = SamplingOptions(temperature=0.8, seed=3, num_predict=30, stop=[stop])
    chunks = list(stream_reply(trunk, detok, [1, 2], opts_stop))
    text = "".join(c.text for c in chunks)
    assert text == full[: full.find(stop)]
    assert chunks[-1].done_reason == "stop"


def test_ignore_eos_generates_past_end_of_text_until_num_predict(trunk):
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=12)
    first = generate(trunk, [Request([4, 5], options=greedy)])[0]
    eot = first[0]  # pretend the first token it draws is end of text
    keep_going = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=12, ignore_eos=True)
    out = generate(trunk, [Request([4, 5], options=keep_going)], eot_id=eot)[0]
    assert len(out) == 12
    assert eot not in out
    assert generate(trunk, [Request([4, 5], options=greedy)], eot_id=eot)[0] == []
    sampled = SamplingOptions(num_predict=20, ignore_eos=True, seed=3)
    assert eot not in generate(trunk, [Request([4, 5], options=sampled)], eot_id=eot)[0]
    assert SamplingOptions.from_ollama({"ignore_eos": True}).ignore_eos
    with pytest.raises(ValueError, match="ignore_eos"):
        SamplingOptions.from_ollama({"ignore_eos": "yes"})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"seed": 2**70}, "seed"),
        ({"seed": -(2**70)}, "seed"),
        ({"num_predict": float("inf")}, "num_predict"),
        ({"top_k": float("nan")}, "top_k"),
        ({"repeat_last_n": 1e400}, "repeat_last_n"),  # what JSON's 1e400 parses to
        ({"temperature": float("inf")}, "temperature"),
        ({"num_predict": 2**64}, "num_predict"),
    ],
)
def test_non_finite_and_out_of_range_options_are_refused_by_name(options, field):
    with pytest.raises(ValueError, match=field):
        SamplingOptions.from_ollama(options)


def test_the_whole_seed_range_torch_takes_is_accepted():
    for seed in (-(2**63), 0, 2**63, 2**64 - 1):
        assert SamplingOptions.from_ollama({"seed": seed}).seed == seed
