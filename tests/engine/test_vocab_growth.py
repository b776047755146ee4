"""Vocabulary expansion in the engine: `Coordizer.add_words` and `Trunk.grow_vocab` on a tiny
real trained model (`constellation.engine.tiny`): old ids, old encodings, old embedding rows and
old tokens' logits stay bit for bit the same, greedy decoding and adapters serve as before."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from constellation.engine import (
    Constellation,
    Coordizer,
    LoRABank,
    LoRAConfig,
    Request,
    SamplingOptions,
    Trunk,
    checkpoint,
    generate,
    tiny,
)
from constellation.engine.coordizer import AddedWords, UnreachableTokens
from constellation.engine.device import cpu_has_bf16

# Words the tiny coordizer splits into 4–5 tokens (" instance" is in 17 of the tiny corpus's
# documents, the others in none), one that is a token already, one that is two pre-tokens.
WORDS = [" qigong", " Fisher", " geodesic", " instance", " the", " hello world"]
PROMPTS = ["The", "In the beginning", "def main():", "A kernel of", "Routing is"]
GREEDY = SamplingOptions(temperature=0, num_predict=40)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 300 steps, not tiny's 40: the 40-step trunk answers every prompt with newlines only
    torch.manual_seed(0)  # the trunk's initialisation: the same model on every run
    return tiny.make_trained_model(tmp_path_factory.mktemp("vocab"), steps=300)


@pytest.fixture
def coordizer(models: Path) -> Coordizer:
    return Coordizer.load(models / "coordizer")


@pytest.fixture
def trunk(models: Path) -> Trunk:
    return checkpoint.load_trunk(models / "trunk")


@pytest.fixture
def added(coordizer: Coordizer) -> AddedWords:
    return coordizer.add_words(WORDS, max_new=4)


def windows(coordizer: Coordizer, n: int = 12, length: int = 160) -> list[list[int]]:
    """Real text's ids (the tiny corpus), as the old coordizer encodes it."""
    docs = [d for d in tiny.corpus() if len(coordizer.encode(d)) >= length]
    return [coordizer.encode(d)[:length] for d in docs[:n]]


# ---- the coordizer ---------------------------------------------------------------------------
def test_each_word_becomes_one_new_token_and_the_others_say_why_not(
    coordizer: Coordizer, added: AddedWords
) -> None:
    old, new = coordizer.vocab_size, added.coordizer
    assert new.vocab_size == old + 4
    assert sorted(added.parts) == list(range(old, old + 4))
    for new_id, text in zip(added.parts, WORDS[:4], strict=True):
        assert len(coordizer.encode(text)) >= 4  # split badly before …
        assert new.encode(text) == [new_id]  # … one token now
        assert added.parts[new_id] == coordizer.encode(text)
        assert new.decode([new_id]) == text
    assert added.skipped == {
        " the": "it is one token already",
        " hello world": "it is 2 pre-tokens: BPE never joins across them",
    }
    fewer = coordizer.add_words(WORDS, max_new=1)
    assert list(fewer.parts) == [old]
    assert fewer.skipped[" Fisher"] == "the limit of 1 new tokens is reached"
    assert coordizer.vocab_size == old  # the original is left as it was


def test_old_ids_and_encodings_never_change(coordizer: Coordizer, added: AddedWords) -> None:
    new = added.coordizer
    for i in range(coordizer.vocab_size):
        token = coordizer.tokenizer.id_to_token(i)
        assert token is not None and new.tokenizer.token_to_id(token) == i
        assert new.decode([i]) == coordizer.decode([i])
    # Every text encodes as before, except that each new word's parts became its one token:
    # words that only start with a new word (" qigongs", " Fishers") keep their old split.
    texts = [*tiny.corpus(), "qigongs and Fishers, a geodesically qigong-like  instance."]
    for text in texts:
        ids = new.encode(text)
        spelled = [p for i in ids for p in added.parts.get(i, [i])]
        assert spelled == coordizer.encode(text)
        assert new.decode(ids) == text
        assert new.encode_large(text).tolist() == ids  # the bulk encoder agrees
    plain = [d for d in tiny.corpus() if not any(w in d for w in WORDS[:4])]
    assert 10 < len(plain) < len(tiny.corpus())
    assert all(new.encode(d) == coordizer.encode(d) for d in plain)


def test_texts_keep_their_basins(coordizer: Coordizer, added: AddedWords) -> None:
    new = added.coordizer
    text = "the qigong master walked the geodesic of the Fisher constellation"
    assert new.encode(text) != coordizer.encode(text)
    np.testing.assert_allclose(new.text_basin(text), coordizer.text_basin(text), rtol=1e-9)


def test_a_saved_grown_coordizer_loads_back_the_same(added: AddedWords, tmp_path: Path) -> None:
    again = Coordizer.load(added.coordizer.save(tmp_path / "c"))
    text = "a qigong of geodesic Fisher constellations"
    assert again.encode(text) == added.coordizer.encode(text)
    assert again.add_words([" qigong"], 1).skipped == {" qigong": "it is one token already"}


def test_a_tokenizer_whose_merges_miss_a_token_is_refused(coordizer: Coordizer) -> None:
    state = json.loads(coordizer.tokenizer.to_str())
    state["model"]["vocab"]["Ġzq"] = coordizer.vocab_size  # a token no merge makes
    broken = Coordizer(
        type(coordizer.tokenizer).from_str(json.dumps(state)),
        np.vstack([coordizer.coords, coordizer.coords[:1]]),
        np.append(coordizer.idf, 1.0),
        coordizer.config,
    )
    with pytest.raises(UnreachableTokens, match="1 tokens"):
        broken.add_words([" qigong"], 1)


# ---- the trunk -------------------------------------------------------------------------------
def test_old_rows_stay_and_new_rows_are_the_mean_of_their_parts(
    trunk: Trunk, added: AddedWords
) -> None:
    before = trunk.embed.weight.detach().clone()
    old = trunk.cfg.vocab_size
    trunk.grow_vocab(added.coordizer.vocab_size, added.parts)
    weight = trunk.embed.weight
    assert trunk.cfg.vocab_size == weight.shape[0] == trunk.embed.num_embeddings == old + 4
    assert torch.equal(weight[:old], before)
    for new_id, ids in added.parts.items():
        expected = before[ids].double().mean(0).float()
        assert torch.equal(weight[new_id], expected)
    with pytest.raises(AssertionError, match="parts"):
        trunk.grow_vocab(old + 6, {old + 4: [1, 2]})  # id old+5 has no parts
    with pytest.raises(AssertionError, match="exceed"):
        trunk.grow_vocab(old, {})


@pytest.mark.parametrize("optimized", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_old_tokens_logits_are_bit_identical_and_new_ones_never_lead(
    models: Path, coordizer: Coordizer, added: AddedWords, optimized: bool, dtype: torch.dtype
) -> None:
    if optimized and dtype == torch.bfloat16 and not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16: serving packs fp32 weights only")
    before = checkpoint.load_trunk(models / "trunk", dtype=dtype)
    after = checkpoint.load_trunk(models / "trunk", dtype=dtype)
    if optimized:  # the serving path: prepacked weights (oneDNN) or column-major ones
        before.optimize_for_inference()
        after.optimize_for_inference()
    packed = after.packed_head is not None
    after.grow_vocab(added.coordizer.vocab_size, added.parts)
    if packed:
        assert after.packed_head is not None and after.packed_head.weight is after.embed.weight
    v = coordizer.vocab_size
    idx = torch.tensor(windows(coordizer))  # (B, T)
    with torch.no_grad():
        a, b = before(idx).logits, after(idx).logits  # (B, T, V), (B, T, V + 4)
    assert torch.equal(b[..., :v], a)
    assert (b[..., v:].max(-1).values < a.max(-1).values).all()
    assert torch.equal(b.argmax(-1), a.argmax(-1))


def test_greedy_generation_is_unchanged(
    trunk: Trunk, models: Path, coordizer: Coordizer, added: AddedWords
) -> None:
    reference = checkpoint.load_trunk(models / "trunk")
    trunk.grow_vocab(added.coordizer.vocab_size, added.parts)
    requests = [Request(coordizer.encode(p), options=GREEDY) for p in PROMPTS]
    expected = generate(reference, requests, coordizer.eot_id)
    assert max(len(set(out)) for out in expected) > 5  # real answers, not one token repeated
    assert generate(trunk, requests, coordizer.eot_id) == expected


def test_an_existing_adapter_serves_the_grown_trunk_the_same(
    trunk: Trunk, models: Path, coordizer: Coordizer, added: AddedWords
) -> None:
    adapter, adapter_cfg = checkpoint.load_adapter(models / "kernels" / str(tiny.ADAPTER_KERNEL))
    assert any(b.abs().sum() > 0 for b in adapter.b.values())  # trained: not the identity
    assert not any("embed" in name for name, _ in adapter.named_parameters())
    reference = checkpoint.load_trunk(models / "trunk")
    trunk.grow_vocab(added.coordizer.vocab_size, added.parts)
    assert adapter_cfg != trunk.cfg and trunk.cfg.serves(adapter_cfg)

    def answers(model: Trunk) -> list[list[int]]:
        bank = LoRABank(model.cfg, LoRAConfig(), n_slots=2)
        bank.load(tiny.ADAPTER_KERNEL, adapter)
        kernel: list[tuple[int | None, float]] = [(tiny.ADAPTER_KERNEL, 1.0)]
        requests = [Request(coordizer.encode(p), kernel, GREEDY) for p in PROMPTS]
        return generate(model, requests, coordizer.eot_id, bank)

    assert answers(trunk) == answers(reference)
    served = Constellation(trunk, added.coordizer)  # the grown pair serves a prompt with a new id
    served.load_adapter(tiny.ADAPTER_KERNEL, adapter)
    prompt = "What is qigong"
    assert max(added.coordizer.encode(prompt)) >= coordizer.vocab_size
    reply = served.reply(prompt, {"temperature": 0, "num_predict": 8}, tiny.ADAPTER_KERNEL)
    assert "".join(chunk.text for chunk in reply)


def test_a_trunk_config_serves_adapters_of_its_smaller_vocabularies_only(trunk: Trunk) -> None:
    cfg = trunk.cfg
    assert cfg.serves(cfg) and cfg.with_vocab(cfg.vocab_size + 9).serves(cfg)
    assert not cfg.serves(cfg.with_vocab(cfg.vocab_size + 1))  # rows the trunk lacks
    assert not cfg.serves(replace(cfg, hidden=cfg.hidden * 2))
    assert not cfg.with_vocab(cfg.vocab_size + 9).serves(replace(cfg, n_layers=cfg.n_layers + 1))
