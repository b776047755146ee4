"""Sampling with Ollama's options (docs/design.md §4).

Order of the chain, as in llama.cpp: repeat penalty → top_k → top_p → min_p → temperature →
draw. temperature ≤ 0 is greedy. Each request draws from its own `torch.Generator` seeded with
`seed`, so identical seeds give identical output whatever else is in the batch.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

INT64_RANGE = (-(2**63), 2**63 - 1)
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


@dataclass
class SamplingOptions:
    temperature: float = 0.8
    top_k: int = 40  # ≤ 0 disables
    top_p: float = 0.9  # ≥ 1 disables
    min_p: float = 0.0  # ≤ 0 disables
    repeat_penalty: float = 1.1  # 1 disables
    repeat_last_n: int = 64  # 0 disables, -1 = the whole context
    seed: int | None = None  # None: a fresh random seed per request
    stop: list[str] = field(default_factory=list)
    num_predict: int = 128  # -1: until end of text or the context is full
    ignore_eos: bool = False  # never sample end of text: generate until num_predict or the context
    # log-probabilities of each token produced and of this many alternatives (0–20); -1: none.
    # A request field in Ollama's and OpenAI's APIs (`logprobs`, `top_logprobs`), not an option.
    logprobs: int = -1

    def __post_init__(self) -> None:
        checks = {
            "temperature": self.temperature >= 0,
            "top_p": self.top_p > 0,
            "min_p": 0 <= self.min_p <= 1,
            "repeat_penalty": self.repeat_penalty > 0,
            "repeat_last_n": self.repeat_last_n >= -1,
            "num_predict": self.num_predict >= -1,
            "logprobs": -1 <= self.logprobs <= 20,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop: must be a list of non-empty strings")

    @classmethod
    def from_ollama(cls, options: Mapping[str, Any] | None) -> SamplingOptions:
        """Build from an Ollama `options` object; unknown keys are ignored, as Ollama does."""
        opts = dict(options or {})
        kwargs: dict[str, Any] = {}
        casts: dict[str, Any] = {
            "temperature": float,
            "top_k": int,
            "top_p": float,
            "min_p": float,
            "repeat_penalty": float,
            "repeat_last_n": int,
            "seed": int,
            "num_predict": int,
        }
        for f in fields(cls):
            if f.name == "logprobs" or f.name not in opts or opts[f.name] is None:
                continue
            value = opts[f.name]
            if f.name == "stop":
                kwargs["stop"] = [value] if isinstance(value, str) else list(value)
                continue
            if f.name == "ignore_eos":
                if not isinstance(value, bool):
                    raise ValueError(f"ignore_eos: expected true or false, got {value!r}")
                kwargs["ignore_eos"] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name}: expected a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}: expected a finite number, got {value!r}")
            low, high = SEED_RANGE if f.name == "seed" else INT64_RANGE
            if casts[f.name] is int and not low <= value <= high:
                raise ValueError(f"{f.name}: {value!r} is out of range ({low} to {high})")
            kwargs[f.name] = casts[f.name](value)
        return cls(**kwargs)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed if seed is not None else secrets.randbits(63))
    return g


def apply_repeat_penalty(logits: Tensor, history: Sequence[int], opts: SamplingOptions) -> Tensor:
    """logits (V,) fp32: divide positive / multiply negative logits of recent tokens."""
    if opts.repeat_penalty == 1.0 or opts.repeat_last_n == 0 or not history:
        return logits
    recent = history if opts.repeat_last_n == -1 else history[-opts.repeat_last_n :]
    idx = torch.tensor(sorted(set(recent)), device=logits.device)
    vals = logits[idx]
    logits = logits.clone()
    logits[idx] = torch.where(vals > 0, vals / opts.repeat_penalty, vals * opts.repeat_penalty)
    return logits


def filter_logits(logits: Tensor, opts: SamplingOptions) -> Tensor:
    """top_k, top_p and min_p on logits (V,); removed entries become -inf."""
    neg = torch.finfo(logits.dtype).min
    if 0 < opts.top_k < logits.numel():
        kth = torch.topk(logits, opts.top_k).values[-1]
        logits = torch.where(logits < kth, neg, logits)
    if opts.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly better tokens
        drop_sorted = before >= opts.top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = torch.where(drop, neg, logits)
    if opts.min_p > 0:
        probs = torch.softmax(logits, dim=-1)
        logits = torch.where(probs < opts.min_p * probs.max(), neg, logits)
    return logits


def sample_next(
    logits: Tensor,
    history: Sequence[int],
    opts: SamplingOptions,
    gen: torch.Generator,
    eot_id: int | None = None,
) -> int:
    """Next token id from logits (V,) of one sequence (never `eot_id` with `ignore_eos`)."""
    logits = apply_repeat_penalty(logits.float(), history, opts)
    if opts.ignore_eos and eot_id is not None:
        logits = logits.clone()
        logits[eot_id] = float("-inf")
    if opts.greedy:
        return int(torch.argmax(logits))
    logits = filter_logits(logits, opts)
    probs = torch.softmax(logits / opts.temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))
