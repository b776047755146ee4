"""The preallocated KV cache, and the per-row slots of continuous batching (`SlotCaches`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .config import TrunkConfig


def cache_dtype(model_dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """fp32 keys/values on CPU: PyTorch's CPU attention kernel is 2–4× slower in bf16 than in
    fp32 at decode shapes (measured), and the cache is small; the model dtype on GPUs."""
    return torch.float32 if torch.device(device).type == "cpu" else model_dtype


class KVCache:
    """Preallocated keys and values (L, B, H, T_max, hd) plus the number of positions filled.

    Rows may be left-padded: `pad` (B,) counts each row's padding, which attention masks out and
    RoPE positions skip, so a padded row computes exactly what it would alone.
    """

    def __init__(
        self,
        cfg: TrunkConfig,
        batch: int,
        max_len: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        t = max_len or cfg.max_seq_len
        assert t <= cfg.max_seq_len, f"cache length {t} exceeds max_seq_len {cfg.max_seq_len}"
        shape = (cfg.n_layers, batch, cfg.n_heads, t, cfg.head_dim)
        k = torch.zeros(shape, dtype=dtype, device=device)
        self._hold(k, torch.zeros_like(k), t)

    def _hold(self, k: Tensor, v: Tensor, max_len: int, index: int = -1) -> None:
        """Keys and values (L, B, H, T, hd) of which `max_len` positions may be filled."""
        self.k, self.v = k, v
        self.k_layers = [k[i] for i in range(k.shape[0])]  # per-layer views
        self.v_layers = [v[i] for i in range(v.shape[0])]
        self.batch, self.max_len, self.pos = k.shape[1], max_len, 0
        self.pad: Tensor | None = None  # (B,) long, None when no row is padded
        self.key_mask: Tensor | None = None  # (B, 1, 1, T_max) bool, valid keys
        self.index = index  # the row of a shared cache this one is a view of (-1: not a view)

    def set_padding(self, pad: list[int]) -> None:
        assert len(pad) == self.batch, f"pad needs {self.batch} entries"
        if any(pad):
            dev = self.k.device
            self.pad = torch.tensor(pad, device=dev)
            idx = torch.arange(self.max_len, device=dev)
            self.key_mask = (idx[None, :] >= self.pad[:, None])[:, None, None, :]

    def mask(self, p: int, t: int) -> Tensor:
        """Attention mask (B or 1, 1, t, p+t) for t queries after p cached positions."""
        dev = self.k.device
        qpos = torch.arange(p, p + t, device=dev)
        mask = (torch.arange(p + t, device=dev)[None, :] <= qpos[:, None])[None, None]
        if self.key_mask is not None:
            mask = mask & self.key_mask[..., : p + t]
        return mask

    def reset(self) -> None:
        self.pos, self.pad, self.key_mask = 0, None, None

    @classmethod
    def slot(cls, shared: KVCache, index: int, max_len: int, count: int = 1) -> KVCache:
        """A batch-`count` cache that is rows index..index+count−1 of `shared` (a view: what it
        stores lands in the shared buffer), holding at most `max_len` positions."""
        assert max_len <= shared.max_len, f"a slot holds at most {shared.max_len} positions"
        assert 0 <= index <= shared.batch - count, f"rows {index}+{count}: past the cache's"
        view = cls.__new__(cls)
        rows = slice(index, index + count)
        view._hold(shared.k[:, rows], shared.v[:, rows], max_len, index)
        return view


class SlotCaches:
    """The decode batch of a continuous batching scheduler (see scheduler.py): row i's history is
    slot i of one shared cache (rows 0..B−1, each at its own position), so a step's attention is
    one call over the first B slots, each row masked to its own positions."""

    def __init__(self, shared: KVCache, rows: Sequence[KVCache]) -> None:
        assert rows, "SlotCaches needs at least one row"
        assert all(row.index == i for i, row in enumerate(rows)), "row i must be slot i"
        self.shared, self.rows = shared, list(rows)
        dev = shared.k.device
        self.positions = torch.tensor([row.pos for row in rows], device=dev)  # (B,)
        self.batch = torch.arange(len(rows), device=dev)
        self.length = max(row.pos for row in rows) + 1  # keys up to the furthest row's new one
        for row in rows:
            assert row.pos < row.max_len, f"KV cache full ({row.max_len} positions)"
        keys = torch.arange(self.length, device=dev)
        self.mask = (keys[None, :] <= self.positions[:, None])[:, None, None, :]  # (B,1,1,L)

    def advance(self) -> None:
        for row in self.rows:
            row.pos += 1
