"""Decode throughput of the `100m` trunk against transformers' LlamaForCausalLM.

Same dims, random weights, tied embeddings, SDPA, same dtype, prompt 32, 128 new tokens, greedy,
measured in the same run. Also: 8 rows on 8 different kernels ÷ the same 8 rows on one kernel, and
time per token at batch 1 ÷ the time to stream every weight once through one mat-vec. Where
llama-cpp-python is installed (`make bench-llamacpp`), llama.cpp decodes the same weights in the
same run (bench/llamacpp.py): the same dtype and Q8_0, at 1 and 2 threads; where it is not, the
JSON's `llamacpp` says so and the rest is unchanged.

    python -m bench.decode            # last line: one JSON object
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from constellation.engine.config import LoRAConfig, trunk_preset
from constellation.engine.generation import Request, generate
from constellation.engine.model import (
    Adapter,
    LoRABank,
    PackedWeight,
    Trunk,
    linear,
    mkldnn_packing_available,
)
from constellation.engine.sampling import SamplingOptions

from . import llamacpp
from .common import default_device, default_dtype, emit, sync

PROMPT, NEW = 32, 128


def build_ours(device: str, dtype: torch.dtype) -> Trunk:
    torch.manual_seed(0)
    trunk = Trunk(trunk_preset("100m")).to(device=device, dtype=dtype).eval()
    return trunk.optimize_for_inference()


def build_hf(trunk: Trunk, device: str, dtype: torch.dtype) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    c = trunk.cfg
    # RoPE θ = 10000 is LlamaConfig's default too; passed through kwargs across versions
    extra: dict[str, Any] = {"attn_implementation": "sdpa", "rope_theta": c.rope_theta}
    cfg = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden,
        intermediate_size=c.mlp_hidden,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        num_key_value_heads=c.n_heads,
        max_position_embeddings=c.max_seq_len,
        rms_norm_eps=c.norm_eps,
        tie_word_embeddings=True,
        **extra,
    )
    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(cfg)
    model = model.to(device=device, dtype=dtype).eval()
    assert model.config._attn_implementation == "sdpa", "the baseline must use SDPA"
    assert model.model.embed_tokens.weight is model.lm_head.weight, "embeddings must be tied"
    return model


def random_adapter(trunk: Trunk, lora: LoRAConfig, seed: int) -> Adapter:
    ad = Adapter(trunk.cfg, lora, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ad.b.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    return ad


def case_time(fn: Callable[[], Any]) -> float:
    """One call's seconds: what the case returns when it times itself (llama.cpp's decode steps
    without its prompt), else its wall time."""
    sync()
    t0 = time.perf_counter()
    own = fn()
    sync()
    wall = time.perf_counter() - t0
    return own if isinstance(own, float) else wall


def at_threads(n: int, fn: Callable[[], Any]) -> Callable[[], None]:
    """`fn` run with n torch threads, the run's count restored afterwards."""

    def run() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", choices=["default", "fp32", "bf16", "fp16"], default="default")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device()
    dtype = {
        "default": default_dtype(device),
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
    }[args.dtype]
    trunk = build_ours(device, dtype)
    hf = build_hf(trunk, device, dtype)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, trunk.cfg.vocab_size, (8, PROMPT), generator=g)
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=NEW)

    def ours(bs: int, kernels: list[int | None] | None = None, bank: LoRABank | None = None):
        ks = kernels or [None] * bs
        reqs = [Request(prompts[i].tolist(), [(ks[i], 1.0)], greedy) for i in range(bs)]
        out = generate(trunk, reqs, bank=bank)
        assert all(len(o) == NEW for o in out), "every row must produce 128 tokens"
        return out

    def theirs(bs: int) -> None:
        ids = prompts[:bs].to(device)
        with torch.inference_mode():
            out = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW,
                min_new_tokens=NEW,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )
        assert out.shape[1] == PROMPT + NEW

    lora = LoRAConfig()
    bank = LoRABank(trunk.cfg, lora, n_slots=9).to(device=device, dtype=dtype)
    for k in range(8):
        bank.load(k, random_adapter(trunk, lora, seed=k))

    # the floor: stream every weight once through one mat-vec of the same dtype. The 1-D
    # mat-vec (`w @ x`), the one-row product with row-major and column-major weights, and the
    # oneDNN-prepacked one-row product the engine decodes with are timed; the fastest is the
    # floor (the strictest choice). Each call uses the next of 3 distinct copies of the matrix,
    # so every call streams its weights from memory as a decode step does, never from a cache
    # still warm from the previous call (the model's 46 MB exceed this CPU's 32 MB L3, one
    # matrix alone would not).
    n_params = trunk.num_params()
    shape = (n_params // trunk.cfg.hidden, trunk.cfg.hidden)
    ws = [torch.randn(shape, device=device, dtype=dtype) for _ in range(3)]
    x = torch.randn(trunk.cfg.hidden, device=device, dtype=dtype)

    def rotating(fn: Any, mats: list[Any]) -> Any:
        nxt = itertools.cycle(mats)

        def run() -> None:
            with torch.inference_mode():
                for _ in range(6):
                    fn(next(nxt))

        return run

    floors = {
        "floor_matvec": rotating(lambda w: w @ x, ws),
        "floor_one_row": rotating(lambda w: torch.nn.functional.linear(x[None], w), ws),
        "floor_one_row_col_major": rotating(
            lambda wt: x[None] @ wt, [w.t().contiguous() for w in ws]
        ),
    }
    if mkldnn_packing_available() and device == "cpu" and dtype != torch.float16:
        packs = [PackedWeight.pack(w, 1) for w in ws]  # the layout the engine decodes with
        floors["floor_one_row_prepacked"] = rotating(
            lambda pw: linear(x[None], pw.weight, pw), packs
        )

    cases = {
        "ours1": lambda: ours(1),
        "hf1": lambda: theirs(1),
        "ours8": lambda: ours(8),
        "hf8": lambda: theirs(8),
        "mixed": lambda: ours(8, list(range(8)), bank),
        "single": lambda: ours(8, [0] * 8, bank),
        **floors,
    }
    # llama.cpp on the same weights (bench/llamacpp.py): its cases join the round-robin below
    run_threads = torch.get_num_threads()
    llama_threads = sorted({*llamacpp.thread_counts(), run_threads})
    llama_why = llamacpp.unavailable(device)
    comparison = None
    times: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        if llama_why is None:
            same = llamacpp.SAME_FTYPE[dtype]
            loaded = stack.enter_context(llamacpp.models(trunk, [same, "Q8_0"]))
            comparison = llamacpp.Comparison(loaded, same, prompts[0].tolist(), NEW)
            cases |= comparison.cases(llama_threads)
            # the engine at batch 1 at each of llama.cpp's thread counts (the run's is `ours1`)
            for n in llama_threads:
                if n != run_threads:
                    cases[f"ours1_t{n}"] = at_threads(n, lambda: ours(1))
        # round-robin over the cases (the floors included), keeping each one's best time: load
        # from other processes on the machine then hits every case alike instead of whichever
        # ran during a burst
        times = {name: [] for name in cases}
        for fn in cases.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in cases.items():
                times[name].append(case_time(fn))
    best = {name: min(ts) for name, ts in times.items()}
    t_ours1, t_hf1, t_ours8, t_hf8 = best["ours1"], best["hf1"], best["ours8"], best["hf8"]
    t_mixed, t_single = best["mixed"], best["single"]
    floor_ms = {name: best[name] / 6 * 1e3 for name in floors}  # 6 mat-vecs per timed call
    t_floor = min(floor_ms.values()) / 1e3
    per_token_bs1 = t_ours1 / NEW

    llama_result: dict[str, Any] = {"llamacpp": llama_why}
    llama_context: dict[str, Any] = {}
    if comparison is not None:
        ours_bs1 = {
            n: NEW / best["ours1" if n == run_threads else f"ours1_t{n}"] for n in llama_threads
        }
        llama_result = comparison.result(best, ours_bs1, run_threads)
        llama_context = comparison.context(ours(1)[0])
        bs1 = ["ours1", *(f"ours1_t{n}" for n in llama_threads if n != run_threads)]
        bs1 += [name for name in cases if name.startswith("llamacpp_")]
        llama_context["runs_tokens_per_s_bs1"] = {  # every timed call, in order
            name: [round(NEW / t, 1) for t in times[name]] for name in bs1
        }

    emit(
        {
            "tokens_per_s_bs1": round(NEW / t_ours1, 2),
            "hf_tokens_per_s_bs1": round(NEW / t_hf1, 2),
            "tokens_per_s_bs8": round(8 * NEW / t_ours8, 2),
            "hf_tokens_per_s_bs8": round(8 * NEW / t_hf8, 2),
            "mixed_vs_single_kernel": round(t_single / t_mixed, 3),
            "floor_ratio_bs1": round(per_token_bs1 / t_floor, 3),
            **llama_result,
        },
        {
            "device": device,
            "dtype": str(dtype),
            "threads": torch.get_num_threads(),
            "params": n_params,
            "ms_per_token_bs1": round(per_token_bs1 * 1e3, 3),
            "floor_ms": round(t_floor * 1e3, 3),
            **{f"{k}_ms": round(v, 3) for k, v in floor_ms.items()},
            "hf_attn": hf.config._attn_implementation,
            "note": "tokens/s = new tokens / wall time of the whole generate call (prefill incl.)",
            "load_average_1m": round(os.getloadavg()[0], 2),  # other jobs on the machine
            **llama_context,
        },
    )


if __name__ == "__main__":
    main()
