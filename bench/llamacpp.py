"""llama.cpp on the very model `bench.decode` measures: one GGUF file, decode tokens/s at batch 1.

The trunk's own weights are written as a llama-architecture GGUF (the `gguf` package) in F32;
llama.cpp itself converts that file to the other types (`llama_model_quantize`: BF16, F16, Q8_0),
and llama-cpp-python's low-level API decodes it: the 32-token prompt in one `llama_decode`, then 128
greedy tokens, one `llama_decode` of one token each, the next token the argmax of the last logits.
The decode figure times those 128 steps alone, prompt processing excluded (llama-bench's `tg`).

The mapping is exact, not just the same shape: the trunk is a Llama block for block (RMSNorm,
RoPE θ 10000 on the whole head, SDPA attention with as many KV heads as heads, SwiGLU, tied
embeddings, no biases). Its fused `qkv` and `gate_up` projections are split into llama.cpp's
q/k/v and gate/up tensors, and q and k rows are permuted per head from RoPE's rotate-half layout
into llama.cpp's interleaved one (what llama.cpp's own converter does to Hugging Face Llama
weights); `tied_logit_gap` below measures what is left.

Both libraries are the `bench-llamacpp` extra (`make bench-llamacpp`); without them `missing()`
says so and `bench.decode` runs as before.

    python -m bench.llamacpp     # [--dtype fp32|bf16|fp16] [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from constellation.engine.config import trunk_preset
from constellation.engine.model import Block, Trunk

from .common import emit

INSTALL_HINT = "make bench-llamacpp"
# torch dtype of the engine's run → llama.cpp's file type for "the same dtype"
SAME_FTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
# llama.h's llama_ftype values (LLAMA_FTYPE_*); "F32" is the file the writer makes
FTYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32}


def missing() -> str | None:
    """None when llama-cpp-python and gguf import, else a plain sentence saying what to run."""
    for module in ("gguf", "llama_cpp"):
        try:
            importlib.import_module(module)
        except ImportError as e:  # llama_cpp raises it too when its shared library fails to load
            return f"not installed ({e}): {INSTALL_HINT}"
    return None


def unavailable(device: str) -> str | None:
    """Why bench.decode cannot compare with llama.cpp on `device` (None: it can)."""
    if device != "cpu":
        return f"skipped: the run is on {device}, this llama.cpp build is for the CPU"
    return missing()


def _llama() -> Any:
    """llama_cpp, with llama.cpp's log (which llama-cpp-python forwards to a logger, printing it
    on stderr) limited to errors."""
    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


def _rope_interleave(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a q or k projection (n_heads·hd, C), rotate-half → llama.cpp's interleaved RoPE:
    per head, row j of the first half goes to 2j and row j of the second half to 2j + 1."""
    out, c = w.shape
    return w.reshape(n_heads, 2, out // n_heads // 2, c).swapaxes(1, 2).reshape(out, c)


def write_gguf(trunk: Trunk, path: Path) -> Path:
    """The trunk as a llama-architecture GGUF in F32 (no tokenizer: `llama.vocab_size` dummy
    tokens; callers feed token ids). Returns `path`."""
    import gguf

    c = trunk.cfg

    def f32(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("qig-trunk")
    w.add_file_type(FTYPES["F32"])
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_seq_len)
    w.add_embedding_length(c.hidden)
    w.add_block_count(c.n_layers)
    w.add_feed_forward_length(c.mlp_hidden)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_heads)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.norm_eps)
    w.add_tokenizer_model("none")
    # numpy (rows, cols) = GGUF (ne1, ne0): token_embd is (vocab, hidden) as llama.cpp wants; no
    # output.weight, so llama.cpp ties the head to token_embd as the trunk does
    w.add_tensor("token_embd.weight", f32(trunk.embed.weight))  # (V, C)
    w.add_tensor("output_norm.weight", f32(trunk.norm.weight))  # (C,)
    for i, block in enumerate(trunk.blocks):
        assert isinstance(block, Block)
        q, k, v = np.split(f32(block.qkv.weight), 3)  # (C, C) each: view(…, 3, H, hd) order
        gate, up = np.split(f32(block.gate_up.weight), 2)  # (F, C) each: chunk(2) order
        tensors = {
            "attn_norm": f32(block.attn_norm.weight),
            "attn_q": _rope_interleave(q, c.n_heads),
            "attn_k": _rope_interleave(k, c.n_heads),
            "attn_v": v,
            "attn_output": f32(block.o.weight),
            "ffn_norm": f32(block.mlp_norm.weight),
            "ffn_gate": gate,
            "ffn_up": up,
            "ffn_down": f32(block.down.weight),
        }
        for name, t in tensors.items():
            w.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def quantize(src: Path, dst: Path, ftype: str) -> Path:
    """llama.cpp's own conversion of the F32 file to `ftype` (norms stay F32, as llama-quantize
    leaves them). Returns `dst`."""
    llama_cpp = _llama()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize to {ftype} failed ({rc})"
    return dst


class LlamaCppModel:
    """One GGUF file loaded on the CPU with one context of the trunk's length: llama.cpp's
    defaults (those of llama-bench too: an F16 KV cache, flash attention where it can), or with
    `exact` an F32 cache and no flash attention (whose F16 attention moves logits by ~1e-3)."""

    def __init__(self, path: Path, n_ctx: int, exact: bool = False) -> None:
        self.lib = llama_cpp = _llama()
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        assert self.model, f"llama.cpp could not load {path}"
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n_ctx
        if exact:
            cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            cparams.type_k = cparams.type_v = llama_cpp.GGML_TYPE_F32
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        assert self.ctx, f"llama.cpp could not make a context for {path}"
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.path = path

    def close(self) -> None:
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)

    def _logits(self) -> np.ndarray:
        ptr = self.lib.llama_get_logits_ith(self.ctx, -1)  # waits for the step to finish
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _decode(self, tokens: list[int]) -> None:
        arr = (self.lib.llama_token * len(tokens))(*tokens)
        rc = self.lib.llama_decode(self.ctx, self.lib.llama_batch_get_one(arr, len(tokens)))
        assert rc == 0, f"llama_decode failed ({rc})"

    def prompt_logits(self, prompt: list[int]) -> np.ndarray:
        """The logits after the prompt, from an empty cache (a copy)."""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        self._decode(prompt)
        return self._logits().copy()

    def greedy(self, prompt: list[int], new: int, threads: int) -> tuple[float, float, list[int]]:
        """(prompt seconds, seconds of the `new` one-token decode steps, the greedy tokens): the
        prompt's argmax is the first token fed; each step feeds the argmax of the last."""
        self.lib.llama_set_n_threads(self.ctx, threads, threads)
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        t0 = time.perf_counter()
        self._decode(prompt)
        tokens = [int(self._logits().argmax())]
        t1 = time.perf_counter()
        one = (self.lib.llama_token * 1)()
        batch = self.lib.llama_batch_get_one(one, 1)
        for _ in range(new):
            one[0] = tokens[-1]
            rc = self.lib.llama_decode(self.ctx, batch)
            assert rc == 0, f"llama_decode failed ({rc})"
            tokens.append(int(self._logits().argmax()))
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, tokens


@contextmanager
def models(trunk: Trunk, ftypes: list[str]) -> Iterator[dict[str, LlamaCppModel]]:
    """`trunk` written once, converted to each of `ftypes`, loaded; files removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="qig-llamacpp-") as tmp:
        f32 = write_gguf(trunk, Path(tmp) / "trunk-F32.gguf")
        loaded: dict[str, LlamaCppModel] = {}
        try:
            for ft in ftypes:
                path = f32 if ft == "F32" else quantize(f32, Path(tmp) / f"trunk-{ft}.gguf", ft)
                loaded[ft] = LlamaCppModel(path, trunk.cfg.max_seq_len)
            yield loaded
        finally:
            for m in loaded.values():
                m.close()


def system_info() -> str:
    return str(_llama().llama_print_system_info().decode().strip())


def tied_logit_gap(trunk: Trunk, model: LlamaCppModel, prompt: list[int]) -> float:
    """max |logit difference| after `prompt` between the trunk and llama.cpp on the same weights,
    relative to the trunk's largest |logit|: ~5e-7 for the `100m` trunk in fp32 against the F32
    file loaded `exact` (the rounding of two fp32 implementations; a wrong tensor would be ~1)."""
    with torch.inference_mode():
        ours = trunk(torch.tensor([prompt], device=trunk.device), last_only=True).logits[0, -1]
    ours_np = ours.float().cpu().numpy()
    theirs = model.prompt_logits(prompt)
    return float(np.abs(ours_np - theirs).max() / np.abs(ours_np).max())


def thread_counts() -> list[int]:
    """1 and 2 threads (issue 17), as many as this machine has cores."""
    return [n for n in (1, 2) if n <= (os.cpu_count() or 1)]


class Comparison:
    """bench.decode's llama.cpp side: cases for its round-robin (each returns its own decode-only
    seconds), then the result keys beside the engine's batch-1 figures."""

    def __init__(self, loaded: dict[str, LlamaCppModel], same: str, prompt: list[int], new: int):
        self.loaded, self.same, self.prompt, self.new = loaded, same, prompt, new
        self.prompt_s: dict[str, float] = {}
        self.tokens: dict[str, list[int]] = {}

    @staticmethod
    def key(ftype: str, threads: int) -> str:
        return f"llamacpp_{ftype.lower()}_t{threads}"

    def cases(self, threads: list[int]) -> dict[str, Any]:
        def case(ft: str, n: int) -> Any:
            def run() -> float:
                p, d, tokens = self.loaded[ft].greedy(self.prompt, self.new, n)
                k = self.key(ft, n)
                self.prompt_s[k] = min(self.prompt_s.get(k, p), p)
                self.tokens[k] = tokens
                return d

            return run

        return {self.key(ft, n): case(ft, n) for ft in (self.same, "Q8_0") for n in threads}

    def result(self, best: dict[str, float], ours: dict[int, float], run_threads: int) -> dict:
        """`ours`: the engine's batch-1 tokens/s by thread count (`run_threads`: the run's)."""
        out: dict[str, Any] = {}
        for n, tps in sorted(ours.items()):
            same = self.new / best[self.key(self.same, n)]
            q8 = self.new / best[self.key("Q8_0", n)]
            suffix = "" if n == run_threads else f"_t{n}"
            out |= {
                f"tokens_per_s_bs1{suffix}": round(tps, 2),
                f"llamacpp_tokens_per_s_bs1{suffix}": round(same, 2),
                f"llamacpp_q8_tokens_per_s_bs1{suffix}": round(q8, 2),
                f"vs_llamacpp_same_dtype{suffix}": round(tps / same, 3),
                f"vs_llamacpp_q8{suffix}": round(tps / q8, 3),
            }
        out.pop("tokens_per_s_bs1")  # the run's own: bench.decode reports it already
        return out

    def context(self, ours_tokens: list[int]) -> dict[str, Any]:
        """Prompt times, how many greedy tokens agree with the engine's, llama.cpp's CPU flags."""

        def agree(tokens: list[int]) -> int:
            pairs = zip(ours_tokens, tokens, strict=False)
            return next((i for i, (a, b) in enumerate(pairs) if a != b), len(ours_tokens))

        return {
            "llamacpp_same_dtype": self.same,
            "llamacpp_prompt_ms": {k: round(v * 1e3, 3) for k, v in self.prompt_s.items()},
            "llamacpp_greedy_tokens_agreeing": {k: agree(t) for k, t in self.tokens.items()},
            "llamacpp_system_info": system_info(),
            "llamacpp_note": (
                f"llama.cpp tokens/s: {self.new} one-token decode steps after the prompt, "
                "prompt excluded (llama-bench's tg); the engine's include its prefill"
            ),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--threads", type=int, nargs="+", default=thread_counts())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    args = ap.parse_args()
    why = missing()
    if why:
        emit({"llamacpp": why})
        return
    torch.manual_seed(0)  # bench.decode's trunk: same preset, same seed
    trunk = Trunk(trunk_preset("100m")).eval()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, trunk.cfg.vocab_size, (args.prompt,), generator=g).tolist()
    same = SAME_FTYPE[dtype]
    ftypes = list(dict.fromkeys(["F32", same, "Q8_0"]))
    runs: dict[str, list[float]] = {}
    prompt_ms: dict[str, float] = {}
    with models(trunk, ftypes) as loaded:
        exact = LlamaCppModel(loaded["F32"].path, trunk.cfg.max_seq_len, exact=True)
        gap = tied_logit_gap(trunk, exact, prompt)
        exact.close()
        for ft in [same, "Q8_0"]:
            for n in args.threads:
                loaded[ft].greedy(prompt, args.new, n)  # warm-up
                key = f"{ft.lower()}_t{n}"
                times = [loaded[ft].greedy(prompt, args.new, n) for _ in range(args.repeats)]
                runs[key] = [round(args.new / t[1], 2) for t in times]
                prompt_ms[key] = round(min(t[0] for t in times) * 1e3, 3)
    result: dict[str, Any] = {f"llamacpp_{k}_tokens_per_s_bs1": max(v) for k, v in runs.items()} | {
        "tied_logit_gap_f32": float(f"{gap:.3g}")
    }
    emit(
        result,
        {
            "runs_tokens_per_s": runs,
            "prompt_ms": prompt_ms,
            "llama_cpp_system_info": system_info(),
            "note": f"decode only: {args.new} one-token steps after a {args.prompt}-token prompt",
        },
    )


if __name__ == "__main__":
    main()
