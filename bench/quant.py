"""Int8 weight-only trunks (issue 17, item 3): the quality they cost beside the speed they give.

Two models, each served full precision (oneDNN-prepacked, as the product does) and through its
int8 twin (`Trunk.quantized`, the same weights):

- `tiny`: the `tiny` preset on the tiny coordizer (vocabulary 512), pretrained here for
  `--steps` steps on the tiny corpus (60 kB), plus one adapter trained on held-out text, so the
  LoRA-on-int8 path is measured too;
- `100m`: the `100m` shape of `bench.decode` (random weights, seed 0: nothing trained at that
  size fits a 2-core run).

For each: held-out loss (`trainer.evaluate_loss` over bootstrap-corpus documents the tiny model
never trained on, under inference mode, with and without the adapter), greedy agreement over
`--prompts` held-out prompts × `--new` tokens (the fraction of identical tokens position by
position, and of identical whole sequences), decode tokens/s at batch 1 (and 8) with 1 and 2
threads (prompt 32, `--new` tokens, prefill included, best of `--repeats`, full precision and
int8 interleaved), and the bytes of the weights the projections and head stream.

    python -m bench.quant            # last line: one JSON object
    python -m bench.quant --kernels  # only the candidate int8 products at the decode shapes

`--kernels` times each candidate for x (1 or 8, 384) against the `100m` shapes (q|k|v 1152×384,
o 384×384, gate|up 1280×384, down 384×640, the tied head 32000×384), µs per call, best of 5
loops of 100 calls (the weights stay warm in the cache, unlike a decode step): fp32 and bf16
oneDNN-prepacked (what the engine uses), `_weight_int8pack_mm` with fp32 and bf16 activations,
dequantise-then-`F.linear`, and fbgemm's dynamic int8 linear (`torch.ao`'s dynamic quantisation:
int8 weights *and* activations quantised per call, so not weight-only).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from constellation.engine.config import LoRAConfig, trunk_preset
from constellation.engine.corpus import CorpusConfig, build_corpus
from constellation.engine.data import TokenStream
from constellation.engine.generation import Request, generate
from constellation.engine.model import Adapter, Block, Int8Weight, LoRABank, LoRARoute, Trunk
from constellation.engine.sampling import SamplingOptions
from constellation.engine.tiny import coordizer, corpus
from constellation.engine.trainer import TrainConfig, Trainer, evaluate_loss

from .common import best_time, emit

PROMPT = 32  # tokens of a speed run's prompt
EVAL = TrainConfig(mode="pretrain", steps=1, batch_size=8, seq_len=128)


def heldout_texts() -> list[str]:
    """Bootstrap-corpus documents the tiny model does not train on (~120 kB)."""
    seen = set(corpus())
    docs = [d for d in build_corpus(CorpusConfig(max_bytes=400_000)) if d not in seen]
    out, size = [], 0
    for d in docs:
        out.append(d)
        size += len(d)
        if size > 120_000:
            break
    return out


def weight_bytes(trunk: Trunk) -> int:
    """Bytes of the matrices the projections and the head multiply by."""
    blocks = [b for b in trunk.blocks if isinstance(b, Block)]
    mats = [w for b in blocks for w in b.packed.values()] + [trunk.packed_head]
    if all(isinstance(w, Int8Weight) for w in mats):
        return sum(w.nbytes for w in mats if isinstance(w, Int8Weight))
    weights = [getattr(b, t).weight for b in blocks for t in ("qkv", "o", "gate_up", "down")]
    return sum(w.numel() * w.element_size() for w in [*weights, trunk.embed.weight])


def agreement(a: list[list[int]], b: list[list[int]]) -> dict[str, float]:
    same = sum(x == y for sa, sb in zip(a, b, strict=True) for x, y in zip(sa, sb, strict=True))
    total = sum(len(s) for s in a)
    first = [
        next((i for i, (x, y) in enumerate(zip(sa, sb, strict=True)) if x != y), len(sa))
        for sa, sb in zip(a, b, strict=True)
    ]
    return {
        "token_agreement": round(same / total, 4),
        "sequence_agreement": round(sum(sa == sb for sa, sb in zip(a, b, strict=True)) / len(a), 4),
        "mean_first_divergence": round(sum(first) / len(first), 1),
    }


def compare(
    name: str,
    full: Trunk,
    heldout: TokenStream,
    prompts: list[list[int]],
    args: argparse.Namespace,
    adapter: Adapter | None = None,
) -> dict[str, Any]:
    int8 = full.quantized()
    result: dict[str, Any] = {"weight_bytes_full": weight_bytes(full)}
    result["weight_bytes_int8"] = weight_bytes(int8)
    routes: dict[str, LoRARoute | None] = {"bare": None}
    if adapter is not None:
        routes["adapter"] = LoRARoute(adapter=adapter)
    with torch.inference_mode():  # evaluate_loss leaves grad on: the int8 copies need it off
        for label, route in routes.items():
            lf = evaluate_loss(full, heldout, EVAL, route, args.windows)
            lq = evaluate_loss(int8, heldout, EVAL, route, args.windows)
            result[f"loss_{label}_full"], result[f"loss_{label}_int8"] = round(lf, 4), round(lq, 4)
            result[f"loss_{label}_delta"] = round(lq - lf, 4)
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=args.new)
    bank = None
    kernels: list[int | None] = [None]
    if adapter is not None:
        bank = LoRABank(full.cfg, adapter.lora, n_slots=2)
        bank.load(1, adapter)
        kernels.append(1)
    for k in kernels:
        reqs = [Request(p, [(k, 1.0)], greedy) for p in prompts]
        a, b = generate(full, reqs, bank=bank), generate(int8, reqs, bank=bank)
        label = "bare" if k is None else "adapter"
        result.update({f"{key}_{label}": v for key, v in agreement(a, b).items()})
    g = torch.Generator().manual_seed(1)
    speed_prompts = torch.randint(0, 500, (8, PROMPT), generator=g).tolist()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bs in (1, 8):
            reqs = [Request(p, [(None, 1.0)], greedy) for p in speed_prompts[:bs]]
            times: dict[str, list[float]] = {"full": [], "int8": []}
            for _ in range(args.repeats):  # interleaved: background load hits both alike
                for label, trunk in (("full", full), ("int8", int8)):
                    times[label].append(best_time(partial(generate, trunk, reqs), 1, 0))
            for label, ts in times.items():
                tps = bs * args.new / min(ts)
                result[f"tokens_per_s_bs{bs}_t{threads}_{label}"] = round(tps, 1)
            full_tps = result[f"tokens_per_s_bs{bs}_t{threads}_full"]
            speedup = result[f"tokens_per_s_bs{bs}_t{threads}_int8"] / full_tps
            result[f"speedup_bs{bs}_t{threads}"] = round(speedup, 3)
    print(f"# {name}: " + ", ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return {f"{name}_{k}": v for k, v in result.items()}


SHAPES = {"qkv": (1152, 384), "o": (384, 384), "gate_up": (1280, 384), "down": (384, 640)}


def per_call_us(fn: Callable[[], Any], calls: int = 100) -> float:
    for _ in range(5):
        fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def candidates(w: Tensor, rows: int) -> dict[str, Callable[[], Any]]:
    """The products to time for x (rows, in) @ wᵀ; a candidate this CPU cannot run is left out."""
    x = torch.randn(rows, w.shape[1])
    iw = Int8Weight.quantize(w)
    xb = x.bfloat16()
    int8mm = torch.ops.aten._weight_int8pack_mm
    out: dict[str, Callable[[], Any]] = {}
    p32 = torch.ops.mkldnn._reorder_linear_weight(w, rows)
    out["fp32_onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(x, p32, None, "none", [], "")
    try:
        p16 = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), rows)
        out["bf16_onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(
            xb, p16, None, "none", [], ""
        )
    except RuntimeError:  # no AVX-512 (bf16 prepacking needs it)
        pass
    out["int8pack_fp32_x"] = lambda: int8mm(x, iw.q, iw.scale)
    out["int8pack_bf16_x"] = lambda: iw.apply(x)  # what the engine uses (x → bf16 → x.dtype)
    out["dequant_then_linear"] = lambda: F.linear(x, iw.dequantize())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        qw = torch.quantize_per_channel(
            w, iw.scale.double(), torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8
        )
    packed = torch.ops.quantized.linear_prepack(qw, None)
    out["fbgemm_dynamic_w8a8"] = lambda: torch.ops.quantized.linear_dynamic(x, packed, False)
    if hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):  # the 4-bit candidate
        q4, scales_zeros = int4_groups(w)
        out["int4pack_g32_bf16_x"] = lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(
            xb, q4, INT4_GROUP, scales_zeros
        )
    return out


INT4_GROUP = 32


def int4_groups(w: Tensor) -> tuple[Tensor, Tensor]:
    """Asymmetric 4-bit groups of 32 along `in` in the CPU kernel's layout (torchao's
    convention: value = (q − 8) · scale + zero), to time the 4-bit option."""
    out_f, in_f = w.shape
    g = w.view(out_f, in_f // INT4_GROUP, INT4_GROUP)
    low, high = g.amin(-1), g.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-8)
    q = torch.round((g - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.view(out_f, in_f), 2)
    zero = low + scale * 8
    return packed, torch.stack([scale, zero], -1).transpose(0, 1).contiguous().bfloat16()


def product_errors(w: Tensor) -> tuple[float, float]:
    """Relative error of the int8 and 4-bit products for 64 random rows (int4: NaN if absent)."""
    x = torch.randn(64, w.shape[1])
    ref = x @ w.t()
    with torch.no_grad():
        e8 = float((Int8Weight.quantize(w).apply(x) - ref).abs().max() / ref.abs().max())
    e4 = float("nan")
    if hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        q4, sz = int4_groups(w)
        y4 = torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), q4, INT4_GROUP, sz)
        e4 = float((y4.float() - ref).abs().max() / ref.abs().max())
    return round(e8, 5), round(e4, 5)


def kernels() -> None:
    torch.manual_seed(0)
    shapes = {**SHAPES, "head": (32000, 384)}
    result: dict[str, Any] = {}
    for rows in (1, 8):
        step: dict[str, float] = {}
        for name, (out_f, in_f) in shapes.items():
            w = torch.randn(out_f, in_f) * 0.02
            times = {
                k: per_call_us(fn, 20 if "dequant" in k else 100)
                for k, fn in candidates(w, rows).items()
            }
            print(
                f"# x {rows}×{in_f} @ {out_f}×{in_f}: "
                + ", ".join(f"{k} {v:.1f} µs" for k, v in times.items())
            )
            for k, v in times.items():
                result[f"{name}_x{rows}_{k}_us"] = round(v, 1)
                step[k] = step.get(k, 0.0) + v * (1 if name == "head" else 8)
            if rows == 1:  # the weights' own error: max |Δy| / max |y| against x @ wᵀ in fp32
                result[f"{name}_int8_rel_err"], result[f"{name}_int4_rel_err"] = product_errors(w)
        for k, v in step.items():  # the 32 projections of 8 layers and the head, back to back
            result[f"step_x{rows}_{k}_ms"] = round(v / 1000, 3)
    emit(result, {"threads": torch.get_num_threads(), "torch": torch.__version__})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300, help="pretraining steps of the tiny trunk")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--windows", type=int, default=32, help="held-out windows of 128 tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--kernels", action="store_true", help="only time the candidate products")
    ap.add_argument("--threads", type=int, default=0, help="with --kernels (0: default)")
    args = ap.parse_args()
    if args.kernels:
        if args.threads:
            torch.set_num_threads(args.threads)
        return kernels()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    coord = coordizer()
    train = TokenStream.from_examples(list(corpus()), coord.encode, coord.eot_id)
    texts = heldout_texts()
    heldout = TokenStream.from_examples(texts, coord.encode, coord.eot_id)
    ids = heldout.ids.tolist()
    step = len(ids) // args.prompts
    prompts = [ids[i * step : i * step + 16] for i in range(args.prompts)]

    torch.manual_seed(0)
    tiny = Trunk(trunk_preset("tiny", vocab_size=coord.vocab_size))
    pre = TrainConfig(steps=args.steps, batch_size=16, seq_len=128, metrics_every=1000)
    Trainer(tiny, pre, train).fit()
    adapter = Adapter(tiny.cfg, LoRAConfig())
    doc = TokenStream.from_examples(texts[:3], coord.encode, coord.eot_id)
    tune = TrainConfig(mode="adapter", steps=60, batch_size=8, seq_len=128, metrics_every=1000)
    Trainer(tiny, tune, doc, adapter=adapter).fit()
    tiny = tiny.to(dtype).eval().optimize_for_inference()
    result = compare("tiny", tiny, heldout, prompts, args, adapter)

    torch.manual_seed(0)
    big = Trunk(trunk_preset("100m")).to(dtype).eval().optimize_for_inference()
    result.update(compare("100m", big, heldout, prompts, args))
    emit(
        result,
        {
            "dtype": args.dtype,
            "tiny_pretrain_steps": args.steps,
            "prompts": args.prompts,
            "new_tokens": args.new,
            "heldout_tokens": len(heldout),
            "torch": torch.__version__,
        },
    )


if __name__ == "__main__":
    main()
