"""Where a batch-1 decode step of the `100m` trunk spends its time (issue 17, item 1).

The same model as `bench.decode` (hidden 384, 8 layers, FF 640, vocabulary 32000, tied, random
weights, prepacked for the CPU), a 32-token prompt, then greedy steps through the engine's own
loop (`generation.decode`). Measured in one run:

- `step_ms`: wall time of a step, without the profiler (best of the repeats);
- per category, from `torch.profiler` (self CPU time of each op, grouped by name, per step):
  GEMMs (the projections and the output head), attention (SDPA), norms, RoPE and the other
  element-wise ops, KV-cache writes and copies, sampling (argmax), the rest;
- `python_and_dispatch_ms`: the step's wall time less every op's self time — Python, the
  dispatcher and the profiler's own share of each op call (so it is an upper bound);
- `gemms_back_to_back_ms`: the step's 33 matrix products with the same packed weights, called
  one after the other on a one-row input with nothing in between;
- `floor_ms`: every weight streamed once through one mat-vec (`bench.decode`'s floor).

python -m bench.decode_profile                 # bf16, the default threads; last line one JSON
python -m bench.decode_profile --dtype fp32 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from constellation.engine.generation import Request, decode
from constellation.engine.model import linear
from constellation.engine.sampling import SamplingOptions

from .common import emit
from .decode import PROMPT, build_ours

STEPS = 64
CATEGORIES = (
    ("gemm", ("mm", "addmm", "linear", "matmul", "bmm", "mkldnn", "_linear")),
    ("attention", ("scaled_dot_product", "attention", "softmax")),
    ("norm", ("rms_norm",)),
    ("kv_cache_and_copies", ("copy_", "index_put", "slice_scatter", "index_copy", "clone", "to")),
    ("sampling", ("argmax", "topk", "max")),
    ("rope_and_elementwise", ("mul", "add", "roll", "cat", "neg", "silu", "sub", "where", "view")),
)


def category(op: str) -> str:
    name = op.removeprefix("aten::").lower()
    for cat, keys in CATEGORIES:
        if any(k == name or name.startswith(k) or k in name for k in keys):
            return cat
    return "other_ops"


def steps(trunk: Any, n: int) -> list[float]:
    """Wall time of each of `n` greedy decode steps after the prompt."""
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, trunk.cfg.vocab_size, (PROMPT,), generator=g).tolist()
    opts = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=n, ignore_eos=True)
    times, last = [], None
    for _ in decode(trunk, [Request(prompt, options=opts)]):
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


def gemms_back_to_back(trunk: Any, repeats: int) -> float:
    """The step's matrix products alone: every projection's weight (and the head) on one row."""
    pairs = [
        (getattr(block, t).weight, block.packed.get(t))
        for block in trunk.blocks
        for t in ("qkv", "o", "gate_up", "down")
    ]
    pairs.append((trunk.embed.weight, trunk.packed_head))  # the tied output head
    x = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype) for w, _ in pairs}
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            for w, packed in pairs:
                linear(x[w.shape[1]], w, packed)
            best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    trunk = build_ours("cpu", dtype)
    steps(trunk, 8)  # warm-up
    step_s = min(sorted(steps(trunk, STEPS))[STEPS // 2] for _ in range(args.repeats))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = steps(trunk, STEPS)
    per_cat: dict[str, float] = defaultdict(float)
    ops: dict[str, float] = {}
    for ev in prof.key_averages():
        if ev.key.startswith("aten::") or ev.key.startswith("mkldnn"):
            ms = ev.self_cpu_time_total / 1e3 / STEPS  # µs over all steps → ms a step
            per_cat[category(ev.key)] += ms
            ops[ev.key] = ms
    ops_ms = sum(per_cat.values())
    profiled_step = sorted(profiled)[STEPS // 2] * 1e3
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:12]
    result = {
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "step_ms": round(step_s * 1e3, 3),
        "profiled_step_ms": round(profiled_step, 3),
        **{f"{k}_ms": round(v, 3) for k, v in sorted(per_cat.items())},
        "ops_total_ms": round(ops_ms, 3),
        "python_and_dispatch_ms": round(profiled_step - ops_ms, 3),
        "gemms_back_to_back_ms": round(gemms_back_to_back(trunk, 20) * 1e3, 3),
    }
    for name, ms in top:
        print(f"# {name:50s} {ms:7.3f} ms/step")
    emit(result)


if __name__ == "__main__":
    main()
