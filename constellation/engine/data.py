"""Training data: examples → one token stream with a loss mask → deterministic batches.

Accepted examples (docs/design.md §6): plain strings, {"text"}, {"prompt", "completion"} (loss on
the
completion only) and {"messages": [{"role", "content"}, ...]} (loss on assistant turns only).
Each example ends with the end-of-text token.

Batches are a pure function of (seed, batch index): window starts are drawn from a permutation
of the windows seeded per epoch, so the data cursor is just the number of batches consumed and a
resumed run reads exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

Example = str | dict[str, Any]


def _pieces(example: Example) -> list[tuple[str, bool]]:
    """(text, counts_for_loss) pieces of one example."""
    if isinstance(example, str):
        return [(example, True)]
    if "text" in example:
        return [(str(example["text"]), True)]
    if "prompt" in example and "completion" in example:
        return [(str(example["prompt"]), False), (str(example["completion"]), True)]
    if "messages" in example:
        out = []
        for i, msg in enumerate(example["messages"]):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise ValueError(f"messages[{i}]: needs 'role' and 'content'")
            role = str(msg["role"])
            out.append((f"{role}: ", False))
            out.append((f"{msg['content']}\n", role == "assistant"))
        return out
    raise ValueError(
        "example: expected a string or an object with 'text', 'prompt'+'completion' or 'messages'"
    )


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
    return rows


@dataclass
class TokenStream:
    ids: np.ndarray  # (N,) int64
    mask: np.ndarray  # (N,) bool: this token is a training target

    @classmethod
    def from_examples(
        cls,
        examples: Iterable[Example],
        encode: Callable[[str], Sequence[int] | np.ndarray],
        eot_id: int,
    ) -> TokenStream:
        """`encode` returns a piece's ids as a list or an array (`Coordizer.encode_large`)."""
        parts: list[np.ndarray] = []
        counted: list[bool] = []  # per part: its tokens are training targets
        eot = np.array([eot_id], dtype=np.int64)
        for ex in examples:
            for text, counts in _pieces(ex):
                parts.append(np.asarray(encode(text), dtype=np.int64))
                counted.append(counts)
            parts.append(eot)
            counted.append(True)
        if not parts:
            raise ValueError("examples: no tokens")
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        return cls(np.concatenate(parts), np.repeat(np.asarray(counted, dtype=bool), lengths))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def split(self, val_fraction: float) -> tuple[TokenStream, TokenStream]:
        cut = int(len(self) * (1 - val_fraction))
        return (
            TokenStream(self.ids[:cut], self.mask[:cut]),
            TokenStream(self.ids[cut:], self.mask[cut:]),
        )


class Batches:
    """Deterministic batches of windows (B, T+1) from a token stream."""

    def __init__(self, stream: TokenStream, batch_size: int, seq_len: int, seed: int) -> None:
        n_windows = (len(stream) - 1) // seq_len
        if n_windows < 1:
            raise ValueError(
                f"data: {len(stream)} tokens are too few for one window of {seq_len + 1}"
            )
        self.stream, self.batch_size, self.seq_len, self.seed = stream, batch_size, seq_len, seed
        self.n_windows = n_windows

    def _window_starts(self, first: int, count: int) -> np.ndarray:
        out = []
        for k in range(first, first + count):
            epoch, pos = divmod(k, self.n_windows)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            out.append(int(perm[pos]) * self.seq_len)
        return np.asarray(out)

    def _windows(self, starts: np.ndarray) -> tuple[Tensor, Tensor]:
        rows = starts[:, None] + np.arange(self.seq_len + 1)  # (B, T+1)
        ids, mask = self.stream.ids[rows], self.stream.mask[rows]
        x = torch.from_numpy(ids[:, :-1].copy())  # (B, T)
        y = torch.from_numpy(np.where(mask[:, 1:], ids[:, 1:], -100))  # (B, T)
        return x, y

    def batch(self, index: int) -> tuple[Tensor, Tensor]:
        """(inputs (B, T), targets (B, T) with -100 where masked) of batch number `index`."""
        return self._windows(self._window_starts(index * self.batch_size, self.batch_size))

    def all_windows(self, limit: int | None = None) -> Sequence[tuple[Tensor, Tensor]]:
        """Every window in order (for evaluation), in batches."""
        n = self.n_windows if limit is None else min(limit, self.n_windows)
        return [
            self._windows(np.arange(first, min(first + self.batch_size, n)) * self.seq_len)
            for first in range(0, n, self.batch_size)
        ]
