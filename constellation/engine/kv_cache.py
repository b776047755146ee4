"""The preallocated KV cache, and the ragged per-row caches of continuous batching."""

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
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.k_layers = [self.k[i] for i in range(cfg.n_layers)]  # per-layer views
        self.v_layers = [self.v[i] for i in range(cfg.n_layers)]
        self.batch, self.max_len, self.pos = batch, t, 0
        self.pad: Tensor | None = None  # (B,) long, None when no row is padded
        self.key_mask: Tensor | None = None  # (B, 1, 1, T_max) bool, valid keys

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


class RaggedCaches:
    """One batch-1 KVCache per row, each at its own position: the decode batch of a continuous
    batching scheduler, where requests join and leave between steps (see scheduler.py)."""

    def __init__(self, rows: Sequence[KVCache]) -> None:
        assert rows, "RaggedCaches needs at least one row"
        assert all(c.batch == 1 for c in rows), "each row cache must have batch 1"
        self.rows = list(rows)

    def positions(self, device: torch.device) -> Tensor:
        return torch.tensor([c.pos for c in self.rows], device=device)  # (B,)
