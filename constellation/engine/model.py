"""The trunk: a decoder-only transformer (docs/design.md §4).

RMSNorm, RoPE, SwiGLU, SDPA attention, tied embeddings, a preallocated KV cache (`kv_cache.py`).
Each linear projection can carry a per-row LoRA delta (`lora.py`): one batched forward serves
rows that use different kernels. `Trunk.optimize_for_inference` prepacks the weights for fast CPU
decoding (`packing.py`), or gives them int8 copies (`quant.py`); `Trunk.quantized` is a second
trunk with int8 weights that shares every parameter with the first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrunkConfig
from .kv_cache import KVCache, SlotCaches, cache_dtype
from .lora import Adapter, LoRABank, LoRARoute, lora_shapes
from .packing import InferenceWeight, PackedWeight, linear, mkldnn_packing_available
from .quant import QUANTIZATIONS, Int8Weight, int8_kernel_available

__all__ = [
    "Adapter",
    "Block",
    "InferenceWeight",
    "Int8Weight",
    "KVCache",
    "LoRABank",
    "LoRARoute",
    "PackedWeight",
    "RMSNorm",
    "SlotCaches",
    "Trunk",
    "TrunkOutput",
    "cache_dtype",
    "linear",
    "lora_shapes",
    "mkldnn_packing_available",
]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # fused kernel; accumulates in fp32 for bf16 inputs
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(cfg: TrunkConfig) -> tuple[Tensor, Tensor]:
    """cos and signed sin tables (max_seq_len, head_dim), rotate-half layout.

    With sin_signed = [−sin, sin], rope(x) = x·cos + roll(x, hd/2)·sin_signed, which equals the
    usual x·cos + rotate_half(x)·sin in three ops.
    """
    half = cfg.head_dim // 2
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(half, dtype=torch.float64) / half))
    ang = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float64), inv)  # (T, hd/2)
    cos = torch.cat([ang.cos(), ang.cos()], dim=-1)  # (T, hd)
    sin = torch.cat([-ang.sin(), ang.sin()], dim=-1)
    return cos.float(), sin.float()


def apply_rope(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """x (..., hd); cos / sin_signed broadcastable to it."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


class Block(nn.Module):
    def __init__(self, cfg: TrunkConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.attn_norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden, bias=False)
        self.o = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.mlp_norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.gate_up = nn.Linear(cfg.hidden, 2 * cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, cfg.hidden, bias=False)
        self.packed: dict[str, InferenceWeight] = {}  # filled by Trunk.optimize_for_inference

    def _proj(self, lin: nn.Linear, x: Tensor, route: LoRARoute | None, target: str) -> Tensor:
        y = linear(x, lin.weight, self.packed.get(target))
        if route is not None:
            d = route.delta(x, self.layer, target)
            if d is not None:
                y = y + d
        return y

    def forward(
        self,
        x: Tensor,  # (B, T, C)
        cos: Tensor,  # (1 or B, T, 1, 1, hd)
        sin: Tensor,  # signed sin, same shape
        route: LoRARoute | None,
        cache: KVCache | SlotCaches | None,
    ) -> Tensor:
        # written for few Python-level ops: at batch 1 decode the non-matmul overhead per layer
        # is what separates a step from the weight-streaming floor
        b, t, c = x.shape
        h = F.rms_norm(x, (c,), self.attn_norm.weight, self.attn_norm.eps)
        qkv = self._proj(self.qkv, h, route, "qkv").view(b, t, 3, self.n_heads, self.head_dim)
        qk = apply_rope(qkv[:, :, :2], cos, sin)  # (B, T, 2, H, hd), q and k in one go
        q, k = qk.permute(2, 0, 3, 1, 4)  # (B, H, T, hd) each
        v = qkv[:, :, 2].transpose(1, 2)  # (B, H, T, hd)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        elif isinstance(cache, SlotCaches):
            assert t == 1, "slot rows decode one token at a time"
            ck = cache.shared.k_layers[self.layer][:b]  # (B, H, Tmax, hd): row i is slot i
            cv = cache.shared.v_layers[self.layer][:b]
            ck[cache.batch, :, cache.positions] = k[:, :, 0].to(ck.dtype)  # each at its position
            cv[cache.batch, :, cache.positions] = v[:, :, 0].to(cv.dtype)
            n = cache.length
            y = F.scaled_dot_product_attention(
                q.to(ck.dtype), ck[:, :, :n], cv[:, :, :n], attn_mask=cache.mask
            ).to(x.dtype)  # (B, H, 1, hd)
        else:
            p = cache.pos
            assert p + t <= cache.max_len, f"KV cache full ({cache.max_len} positions)"
            ck, cv = cache.k_layers[self.layer], cache.v_layers[self.layer]  # (B, H, Tmax, hd)
            ck[:, :, p : p + t] = k
            cv[:, :, p : p + t] = v
            keys, vals = ck[:, :, : p + t], cv[:, :, : p + t]  # (B, H, p+t, hd)
            qc = q.to(ck.dtype)  # the cache may be fp32 under a bf16 trunk (see KVCache)
            if cache.key_mask is None and (t == 1 or p == 0):
                y = F.scaled_dot_product_attention(qc, keys, vals, is_causal=t > 1)
            else:
                y = F.scaled_dot_product_attention(qc, keys, vals, attn_mask=cache.mask(p, t))
            y = y.to(x.dtype)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        x = x + self._proj(self.o, y, route, "o")
        h = F.rms_norm(x, (c,), self.mlp_norm.weight, self.mlp_norm.eps)
        gate, up = self._proj(self.gate_up, h, route, "gate_up").chunk(2, dim=-1)
        return x + self._proj(self.down, F.silu(gate) * up, route, "down")


@dataclass
class TrunkOutput:
    logits: Tensor  # (B, T', V) fp32; T' = T, or 1 with last_only
    hidden: Tensor  # (B, T, C) final hidden states (after the final norm)
    loss: Tensor | None = None


class Trunk(nn.Module):
    rope_cos: Tensor  # (max_seq_len, hd) buffers
    rope_sin: Tensor

    def __init__(self, cfg: TrunkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.packed_head: InferenceWeight | None = None  # see optimize_for_inference
        self.quantization: str | None = None  # "int8" once optimize_for_inference quantised it
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.cfg.init_std
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("weight") and p.dim() == 2:
                    s = (
                        std / math.sqrt(2 * self.cfg.n_layers)
                        if name.endswith(("o.weight", "down.weight"))
                        else std
                    )
                    p.copy_(torch.randn(p.shape, generator=g) * s)
                elif name.endswith("weight"):
                    p.fill_(1.0)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def optimize_for_inference(self, batch_hint: int = 1, quantize: str | None = None) -> Trunk:
        """Prepare the weights for fast CPU decoding; shapes and training are unchanged, and so
        are the values unless `quantize="int8"`: then every projection and the tied head are
        multiplied through a per-channel int8 copy instead (`quant.py`; CPU only; fp32 or bf16
        trunks), under the same no_grad/version rule as the prepacked copies below.

        With oneDNN available (bf16/fp32), every projection and the tied output head get a
        prepacked copy used only under no_grad/inference_mode and only while the parameter's
        version is unchanged (an optimiser step makes it fall back to `F.linear` until this is
        called again). Measured on the bench machine: the 33 decode GEMMs of `100m` take ~2.0 ms
        instead of ~4.2 ms at batch 1 in bf16. Without oneDNN, weight matrices are stored
        column-major instead (`F.linear` then streams a contiguous (in, out) matrix, 15–45%
        faster at decode batch sizes). fp16 and GPUs are left as they are. Returns self.
        """
        if quantize is not None:
            return self._quantize(quantize)
        if self.device.type != "cpu" or self.dtype not in (torch.float32, torch.bfloat16):
            return self
        if mkldnn_packing_available():
            for block in self.blocks:
                assert isinstance(block, Block)
                block.packed = {
                    t: PackedWeight.pack(getattr(block, t).weight, batch_hint)
                    for t in ("qkv", "o", "gate_up", "down")
                }
            self.packed_head = PackedWeight.pack(self.embed.weight, batch_hint)
            return self
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() == 2 and p.is_contiguous():
                    p.data = p.data.t().contiguous().t()
        return self

    def _quantize(self, kind: str) -> Trunk:
        if kind not in QUANTIZATIONS:
            raise ValueError(f"quantize: expected one of {', '.join(QUANTIZATIONS)}, got {kind!r}")
        if self.device.type != "cpu" or self.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(
                f"quantize: int8 weights need a CPU fp32/bf16 trunk, not {self.dtype} on "
                f"{self.device.type}"
            )
        if not int8_kernel_available():
            raise ValueError("quantize: this PyTorch has no int8 weight-only kernel")
        for block in self.blocks:
            assert isinstance(block, Block)
            block.packed = {
                t: Int8Weight.quantize(getattr(block, t).weight)
                for t in ("qkv", "o", "gate_up", "down")
            }
        self.packed_head = Int8Weight.quantize(self.embed.weight)
        self.quantization = kind
        return self

    def quantized(self, kind: str = "int8") -> Trunk:
        """A second trunk for serving whose projections and head go through int8 copies; every
        parameter and buffer is shared with this one (no full-precision copy is made), so LoRA
        banks, caches and adapters made for this trunk serve it too. For inference only: its
        int8 copies are not updated when the shared weights change (it falls back to them)."""
        twin = copy.copy(self)  # shares the parameter, buffer and module dicts …
        twin._modules = dict(self._modules)  # … except the modules: new blocks below
        twin._modules["blocks"] = nn.ModuleList(copy.copy(b) for b in self.blocks)
        return twin._quantize(kind)

    def grow_vocab(self, new_size: int, parts: Mapping[int, Sequence[int]]) -> None:
        """Append embedding rows for ids old_size..new_size-1, in place; nothing else changes.

        `parts[new_id]` are the old ids the new token's text used to split into. Its row is
        their mean embedding (accumulated in fp64): on the input side the token starts as the
        average of what it replaces, and on the output side (the head is tied) its logit is
        h·mean(e_parts) = the mean of its parts' logits, which is never above the largest of
        them, so the new token does not outrank the old ones and greedy decoding picks what it
        picked before (a tie goes to the lower, old id: `argmax` returns the first). Old rows are
        kept bit for bit and the hidden states do not depend on the vocabulary, so the old
        tokens' logits on inputs without new ids are unchanged (tests/engine/test_vocab_growth.py
        checks both bit for bit). The packed head (`optimize_for_inference`) is rebuilt, the
        weight layout kept. Optimisers holding the old embedding parameter must be rebuilt; do
        not grow a trunk that is serving.
        """
        old = self.cfg.vocab_size
        assert new_size > old, f"new_size {new_size} must exceed the vocabulary {old}"
        assert set(parts) == set(range(old, new_size)), (
            f"parts: need the old ids of every new id {old}..{new_size - 1}, got {sorted(parts)}"
        )
        for new_id, ids in parts.items():
            assert len(ids) > 0 and all(0 <= i < old for i in ids), (
                f"parts[{new_id}]: need one or more old ids (< {old}), got {list(ids)}"
            )
        weight = self.embed.weight  # (V, C)
        with torch.no_grad():
            rows = torch.stack(
                [weight[list(parts[i])].double().mean(0) for i in range(old, new_size)]
            ).to(weight.dtype)  # (new − old, C)
            grown = torch.cat([weight.detach(), rows])  # (new, C), row-major
            if not weight.is_contiguous() and weight.t().is_contiguous():
                grown = grown.t().contiguous().t()  # keep optimize_for_inference's layout
        self.embed.weight = nn.Parameter(grown, requires_grad=weight.requires_grad)
        self.embed.num_embeddings = new_size
        self.cfg = self.cfg.with_vocab(new_size)
        if isinstance(self.packed_head, Int8Weight):
            self.packed_head = Int8Weight.quantize(self.embed.weight)
        elif self.packed_head is not None:  # every caller packs with the default batch hint, 1
            self.packed_head = PackedWeight.pack(self.embed.weight, batch_hint=1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: Tensor,  # (B, T) long
        targets: Tensor | None = None,  # (B, T) long, -100 = ignore
        route: LoRARoute | None = None,
        cache: KVCache | SlotCaches | None = None,
        last_only: bool = False,
        ends: Tensor | None = None,  # (B,) long: with last_only, row i's last position
    ) -> TrunkOutput:
        """`ends` serves right-padded rows (the scheduler's batched prefill): causal attention
        keeps a row's positions from its padding, and its logits are read at its own end."""
        b, t = idx.shape
        if isinstance(cache, SlotCaches):
            return self._slot_forward(idx, route, cache)
        start = cache.pos if cache is not None else 0
        assert start + t <= self.cfg.max_seq_len, (
            f"sequence of {start + t} exceeds max_seq_len {self.cfg.max_seq_len}"
        )
        if cache is not None and cache.pad is not None:
            pos = torch.arange(start, start + t, device=idx.device)[None] - cache.pad[:, None]
            pos = pos.clamp(min=0)  # (B, T)
            cos = self.rope_cos[pos][:, :, None, None]  # (B, T, 1, 1, hd)
            sin = self.rope_sin[pos][:, :, None, None]
        else:
            cos = self.rope_cos[start : start + t][None, :, None, None]  # (1, T, 1, 1, hd)
            sin = self.rope_sin[start : start + t][None, :, None, None]
        if cos.dtype != self.dtype:
            cos, sin = cos.to(self.dtype), sin.to(self.dtype)
        x = self.embed(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin, route, cache)
        if cache is not None:
            cache.pos += t
        hidden = self.norm(x)  # (B, T, C)
        if last_only and ends is not None:
            h = hidden[torch.arange(b, device=idx.device), ends][:, None]  # (B, 1, C)
        else:
            h = hidden[:, -1:] if last_only else hidden
        logits = linear(h, self.embed.weight, self.packed_head).float()  # tied, (B, T', V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return TrunkOutput(logits=logits, hidden=hidden, loss=loss)

    def _slot_forward(
        self, idx: Tensor, route: LoRARoute | None, caches: SlotCaches
    ) -> TrunkOutput:
        """One decode step (idx (B, 1)) where row i continues the sequence in slot i."""
        assert idx.shape == (len(caches.rows), 1), "slot decode takes one token per row"
        pos = caches.positions  # (B,)
        cos = self.rope_cos[pos][:, None, None, None].to(self.dtype)  # (B, 1, 1, 1, hd)
        sin = self.rope_sin[pos][:, None, None, None].to(self.dtype)
        x = self.embed(idx)  # (B, 1, C)
        for block in self.blocks:
            x = block(x, cos, sin, route, caches)
        caches.advance()
        hidden = self.norm(x)  # (B, 1, C)
        logits = linear(hidden, self.embed.weight, self.packed_head).float()  # (B, 1, V)
        return TrunkOutput(logits=logits, hidden=hidden)
