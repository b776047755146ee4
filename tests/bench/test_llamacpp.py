"""bench/llamacpp.py: the GGUF of a trunk reads back as the same model, and without the
`bench-llamacpp` extra the comparison says plainly what to install.

The GGUF tests need `gguf` and the decode test llama-cpp-python (the `bench-llamacpp` extra, never
part of `make install`): each is skipped where its package is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import llamacpp
from constellation.engine.config import TrunkConfig
from constellation.engine.model import Block, Trunk, apply_rope, rope_tables

CFG = TrunkConfig(vocab_size=96, hidden=32, n_layers=2, n_heads=2, mlp_hidden=48, max_seq_len=32)


@pytest.fixture
def trunk() -> Trunk:
    torch.manual_seed(0)
    return Trunk(CFG).eval()


def field(reader, key: str):
    return reader.fields[key].contents()


def test_it_writes_a_llama_gguf_with_the_trunks_metadata_and_shapes(trunk, tmp_path: Path):
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(llamacpp.write_gguf(trunk, tmp_path / "t.gguf"))

    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "llama.vocab_size") == CFG.vocab_size
    assert field(reader, "llama.embedding_length") == CFG.hidden
    assert field(reader, "llama.block_count") == CFG.n_layers
    assert field(reader, "llama.feed_forward_length") == CFG.mlp_hidden
    assert field(reader, "llama.attention.head_count") == CFG.n_heads
    assert field(reader, "llama.attention.head_count_kv") == CFG.n_heads
    assert field(reader, "llama.rope.dimension_count") == CFG.head_dim
    assert field(reader, "llama.rope.freq_base") == pytest.approx(CFG.rope_theta)
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(CFG.norm_eps)
    assert field(reader, "tokenizer.ggml.model") == "none"

    tensors = {t.name: t for t in reader.tensors}
    c, f, v = CFG.hidden, CFG.mlp_hidden, CFG.vocab_size
    expected = {"token_embd.weight": (v, c), "output_norm.weight": (c,)}
    for i in range(CFG.n_layers):
        expected |= {
            f"blk.{i}.attn_norm.weight": (c,),
            f"blk.{i}.attn_q.weight": (c, c),
            f"blk.{i}.attn_k.weight": (c, c),
            f"blk.{i}.attn_v.weight": (c, c),
            f"blk.{i}.attn_output.weight": (c, c),
            f"blk.{i}.ffn_norm.weight": (c,),
            f"blk.{i}.ffn_gate.weight": (f, c),
            f"blk.{i}.ffn_up.weight": (f, c),
            f"blk.{i}.ffn_down.weight": (c, f),
        }
    assert {name: tuple(t.data.shape) for name, t in tensors.items()} == expected
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())
    # tied: no output.weight, the embedding is the head
    np.testing.assert_array_equal(
        tensors["token_embd.weight"].data, trunk.embed.weight.detach().numpy()
    )
    block = trunk.blocks[1]
    assert isinstance(block, Block)
    np.testing.assert_array_equal(
        tensors["blk.1.attn_v.weight"].data, block.qkv.weight[2 * c :].detach().numpy()
    )
    np.testing.assert_array_equal(
        tensors["blk.1.ffn_up.weight"].data, block.gate_up.weight[f:].detach().numpy()
    )


def interleaved_rope(x: np.ndarray, pos: int, cfg: TrunkConfig) -> np.ndarray:
    """llama.cpp's LLAMA_ROPE_TYPE_NORM: rotate the pairs (2j, 2j+1) of each head by pos·θ_j."""
    half = cfg.head_dim // 2
    theta = pos / cfg.rope_theta ** (np.arange(half) / half)  # (hd/2,)
    pairs = x.reshape(cfg.n_heads, half, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = np.cos(theta), np.sin(theta)
    return np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(-1)


def test_its_permuted_q_and_k_give_the_trunks_attention_scores_under_interleaved_rope(
    trunk, tmp_path: Path
):
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(llamacpp.write_gguf(trunk, tmp_path / "t.gguf"))
    tensors = {t.name: t.data.astype(np.float64) for t in reader.tensors}
    block = trunk.blocks[0]
    assert isinstance(block, Block)
    c, hd = CFG.hidden, CFG.head_dim
    w = block.qkv.weight.detach().double()
    x_q, x_k = torch.randn(c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)
    pq, pk = 7, 3
    cos, sin = (t.double() for t in rope_tables(CFG))
    q = apply_rope((w[:c] @ x_q).view(CFG.n_heads, hd), cos[pq], sin[pq])  # (H, hd)
    k = apply_rope((w[c : 2 * c] @ x_k).view(CFG.n_heads, hd), cos[pk], sin[pk])
    ours = (q * k).sum(-1).numpy()  # (H,) per-head scores

    q2 = interleaved_rope(tensors["blk.0.attn_q.weight"] @ x_q.numpy(), pq, CFG)
    k2 = interleaved_rope(tensors["blk.0.attn_k.weight"] @ x_k.numpy(), pk, CFG)
    theirs = (q2 * k2).reshape(CFG.n_heads, hd).sum(-1)
    # rope_tables are fp32 (computed in fp64): agreement to fp32's rounding, where a wrong row
    # order would differ in the first digit
    np.testing.assert_allclose(theirs, ours, rtol=1e-6)


def test_it_says_plainly_what_to_install_when_llama_cpp_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    why = llamacpp.unavailable("cpu")
    assert why is not None
    assert why.startswith("not installed")
    assert why.endswith(": make bench-llamacpp")
    assert str(llamacpp.unavailable("cuda")).startswith("skipped: the run is on cuda")

    monkeypatch.setattr(sys, "argv", ["bench.llamacpp"])
    llamacpp.main()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"llamacpp": why}


def test_llama_cpp_decodes_the_gguf_to_the_trunks_logits(trunk):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    prompt = list(range(5, 5 + 12))
    with llamacpp.models(trunk, ["F32"]) as loaded:
        exact = llamacpp.LlamaCppModel(loaded["F32"].path, CFG.max_seq_len, exact=True)
        gap = llamacpp.tied_logit_gap(trunk, exact, prompt)
        exact.close()
        _, seconds, tokens = loaded["F32"].greedy(prompt, 8, threads=1)
    assert gap < 1e-5, f"llama.cpp's logits differ from the trunk's by {gap:.2e} (relative)"
    assert seconds > 0
    assert len(tokens) == 9  # the prompt's argmax, then one per decode step
