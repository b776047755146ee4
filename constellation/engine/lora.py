"""LoRA kernels: one kernel's adapter, the bank that stacks many, and the per-row route
(docs/design.md §4).

ΔW = s · A B with A (in, r), B (r, out), s = α / r, on the fused q|k|v projection, the attention
output, the fused gate|up projection and the MLP down projection. One batched forward serves rows
that use different kernels by gathering each row's A and B from the bank and applying them with
`bmm` — the shrink/expand pattern of Punica's BGMV. Slot 0 of a bank is all zeros: standby
kernels use it and get the bare trunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .config import LoRAConfig, TrunkConfig


def lora_shapes(cfg: TrunkConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of every LoRA-able projection of a block."""
    c, m = cfg.hidden, cfg.mlp_hidden
    return {"qkv": (c, 3 * c), "o": (c, c), "gate_up": (c, 2 * m), "down": (m, c)}


class Adapter(nn.Module):
    """One kernel's LoRA: for each block and target, A (in, r) and B (r, out); ΔW = s · A B."""

    def __init__(self, cfg: TrunkConfig, lora: LoRAConfig, seed: int = 0) -> None:
        super().__init__()
        self.lora = lora
        g = torch.Generator().manual_seed(seed)
        shapes = lora_shapes(cfg)
        self.a = nn.ParameterDict()
        self.b = nn.ParameterDict()
        for layer in range(cfg.n_layers):
            for t in lora.targets:
                fin, fout = shapes[t]
                a = torch.randn(fin, lora.rank, generator=g) / math.sqrt(fin)
                self.a[f"{layer}_{t}"] = nn.Parameter(a)
                self.b[f"{layer}_{t}"] = nn.Parameter(torch.zeros(lora.rank, fout))

    def pair(self, layer: int, target: str) -> tuple[Tensor, Tensor] | None:
        key = f"{layer}_{target}"
        if key not in self.a:
            return None
        return self.a[key], self.b[key]


class LoRABank(nn.Module):
    """Stacked adapters of many kernels for batched inference; slot 0 is the bare trunk.

    Buffers a_{layer}_{target} (S, in, r) and b_{layer}_{target} (S, r, out).
    """

    def __init__(self, cfg: TrunkConfig, lora: LoRAConfig, n_slots: int) -> None:
        super().__init__()
        assert n_slots >= 1, "a bank needs at least the bare-trunk slot 0"
        self.cfg, self.lora = cfg, lora
        self.n_slots = n_slots
        self.slot_of: dict[int, int] = {}  # kernel id → slot
        shapes = lora_shapes(cfg)
        for layer in range(cfg.n_layers):
            for t in lora.targets:
                fin, fout = shapes[t]
                self.register_buffer(f"a_{layer}_{t}", torch.zeros(n_slots, fin, lora.rank))
                self.register_buffer(f"b_{layer}_{t}", torch.zeros(n_slots, lora.rank, fout))

    def pair(self, layer: int, target: str) -> tuple[Tensor, Tensor] | None:
        if target not in self.lora.targets:
            return None
        return getattr(self, f"a_{layer}_{target}"), getattr(self, f"b_{layer}_{target}")

    def load(self, kernel: int, adapter: Adapter) -> int:
        """Copy a kernel's adapter into its slot (allocating one); returns the slot."""
        slot = self.slot_of.get(kernel)
        if slot is None:
            used = set(self.slot_of.values())
            free = [s for s in range(1, self.n_slots) if s not in used]
            if not free:
                raise ValueError(f"bank: all {self.n_slots - 1} adapter slots are in use")
            slot = free[0]
            self.slot_of[kernel] = slot
        with torch.no_grad():
            for layer in range(self.cfg.n_layers):
                for t in self.lora.targets:
                    pair = adapter.pair(layer, t)
                    assert pair is not None, f"adapter lacks target {t} of layer {layer}"
                    a, b = self.pair(layer, t)  # type: ignore[misc]
                    a[slot].copy_(pair[0])
                    b[slot].copy_(pair[1])
        return slot

    def unload(self, kernel: int) -> None:
        slot = self.slot_of.pop(kernel, None)
        if slot is not None:
            with torch.no_grad():
                for _name, buf in self.named_buffers():
                    buf[slot].zero_()

    def slots_for(self, kernels: Sequence[int | None]) -> list[int]:
        """Slot of each row's kernel; standby kernels (no adapter) and None get slot 0."""
        return [0 if k is None else self.slot_of.get(k, 0) for k in kernels]

    def adapter(self, kernel: int) -> Adapter:
        """A copy of a loaded kernel's adapter (e.g. to continue training it)."""
        if kernel not in self.slot_of:
            raise KeyError(f"kernel {kernel} has no adapter in this bank")
        slot = self.slot_of[kernel]
        ad = Adapter(self.cfg, self.lora)
        with torch.no_grad():
            for layer in range(self.cfg.n_layers):
                for t in self.lora.targets:
                    a, b = self.pair(layer, t)  # type: ignore[misc]
                    ad.a[f"{layer}_{t}"].copy_(a[slot])
                    ad.b[f"{layer}_{t}"].copy_(b[slot])
        return ad


@dataclass
class LoRARoute:
    """Which LoRA each row of a batch uses.

    Either one `adapter` for every row (training), or per-row `slots` into a `bank` (inference).
    `uniform` is the common slot when all rows share one (a cheaper matmul path), else None.
    """

    adapter: Adapter | None = None
    bank: LoRABank | None = None
    slots: Tensor | None = None  # (B,) long
    uniform: int | None = None
    # per (layer, target): the rows' gathered A (B or 1, in, r) and scaled B (B or 1, r, out),
    # built on first use so a decode loop gathers once, not every step (the bank must not change
    # while a route is in use: routes live for one decode call)
    _gathered: dict[tuple[int, str], tuple[Tensor, Tensor]] = field(default_factory=dict)

    @classmethod
    def for_rows(cls, bank: LoRABank, slots: Sequence[int]) -> LoRARoute | None:
        if all(s == 0 for s in slots):
            return None  # every row on the bare trunk
        first = slots[0]
        uniform = first if all(s == first for s in slots) else None
        device = next(iter(bank.buffers())).device
        return cls(bank=bank, slots=torch.tensor(slots, device=device), uniform=uniform)

    def delta(self, x: Tensor, layer: int, target: str) -> Tensor | None:
        """LoRA delta for projection `target` of `layer` given its input x (B, T, in)."""
        if self.adapter is not None:
            pair = self.adapter.pair(layer, target)
            if pair is None:
                return None
            a, b = pair
            return (x @ a.to(x.dtype)) @ (b.to(x.dtype) * self.adapter.lora.scale)
        assert self.bank is not None, "route needs a bank"
        assert self.slots is not None, "route needs per-row slots"
        got = self._gathered.get((layer, target))
        if got is None:
            pair = self.bank.pair(layer, target)
            if pair is None:
                return None
            a, b = pair
            if self.uniform is not None:  # one kernel for every row: no gather needed
                a_rows, b_rows = a[self.uniform][None], b[self.uniform][None]  # (1, in, r) …
            else:
                a_rows, b_rows = a.index_select(0, self.slots), b.index_select(0, self.slots)
            # on CPU the tiny LoRA GEMMs run in fp32: bmm there is 2–4× faster than bf16 GEMMs
            # of these shapes (measured), and the same kernel serves one or many adapters
            dt = torch.float32 if x.device.type == "cpu" else x.dtype
            got = (a_rows.to(dt), b_rows.to(dt) * self.bank.lora.scale)
            if not torch.is_grad_enabled():
                self._gathered[(layer, target)] = got
        a_rows, b_rows = got  # (B or 1, in, r), (B or 1, r, out)
        n = x.shape[0]
        if a_rows.shape[0] != n:
            assert a_rows.shape[0] == 1, f"route has {a_rows.shape[0]} rows, batch has {n}"
            a_rows, b_rows = a_rows.expand(n, -1, -1), b_rows.expand(n, -1, -1)
        shrink = torch.bmm(x.to(a_rows.dtype), a_rows)  # (B, T, r)
        return torch.bmm(shrink, b_rows).to(x.dtype)  # (B, T, out)
