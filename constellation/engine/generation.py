"""Batched, multi-kernel generation and the streaming reply iterator (docs/design.md §4).

A request is a prompt, the kernel(s) that answer it and its sampling options. A request with
several kernels is a top-k *mixture*: each kernel gets its own row of the batch and the request's
next-token logits are the weighted sum of its rows' logits. All rows of all requests go through
one forward per step; each row's LoRA is gathered from the bank (slot 0 = the bare trunk).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .model import KVCache, LoRABank, LoRARoute, Trunk, cache_dtype
from .sampling import SamplingOptions, make_generator, sample_next


@dataclass
class Request:
    prompt: list[int]
    kernels: list[tuple[int | None, float]] = field(default_factory=lambda: [(None, 1.0)])
    options: SamplingOptions = field(default_factory=SamplingOptions)
    # an llguidance matcher fresh for this request (`grammar.Grammars.matcher`): its tokens are
    # constrained to the grammar (the scheduler only)
    grammar: Any = None

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("prompt: needs at least one token")
        if min(self.prompt) < 0:
            raise ValueError("prompt: token ids must be non-negative")
        if not self.kernels:
            raise ValueError("kernels: needs at least one (kernel, weight) pair")
        if any(w < 0 for _, w in self.kernels) or sum(w for _, w in self.kernels) <= 0:
            raise ValueError("kernels: weights must be non-negative and not all zero")


@dataclass
class StepResult:
    tokens: list[int | None]  # next token per request; None once a request has finished
    done_reasons: list[str | None]  # "stop" (end of text) or "length", set on the finishing step


@dataclass
class DecodeStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0
    hidden: list[Tensor] = field(default_factory=list)  # final hidden states of request 0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


@torch.inference_mode()
def decode(
    trunk: Trunk,
    requests: Sequence[Request],
    eot_id: int | None = None,
    bank: LoRABank | None = None,
    stats: DecodeStats | None = None,
    keep_hidden: bool = False,
) -> Iterator[StepResult]:
    """Generate for all requests together, one StepResult per step until all have finished."""
    cfg = trunk.cfg
    rows: list[tuple[list[int], int]] = []  # (prompt, slot) per row
    weights: list[list[float]] = []
    for r in requests:
        if r.grammar is not None:
            raise ValueError("grammar: constrained decoding runs in the scheduler")
        kernels = [k for k, _ in r.kernels]
        slots = bank.slots_for(kernels) if bank is not None else [0] * len(kernels)
        if any(k is not None for k in kernels) and bank is None:
            raise ValueError("kernels: a bank is needed to serve kernel adapters")
        total = sum(w for _, w in r.kernels)
        weights.append([w / total for _, w in r.kernels])
        prompt = r.prompt[-(cfg.max_seq_len - 1) :]
        rows += [(prompt, s) for s in slots]
    if max(max(p) for p, _ in rows) >= cfg.vocab_size:
        raise ValueError(f"prompt: token id beyond the trunk's vocabulary ({cfg.vocab_size})")
    n_rows, dev = len(rows), trunk.device
    plen = max(len(p) for p, _ in rows)
    budgets = [
        r.options.num_predict if r.options.num_predict >= 0 else cfg.max_seq_len for r in requests
    ]
    length = min(cfg.max_seq_len, plen + max(budgets))
    cache = KVCache(cfg, n_rows, length, cache_dtype(trunk.dtype, dev), dev)
    cache.set_padding([plen - len(p) for p, _ in rows])
    route = LoRARoute.for_rows(bank, [s for _, s in rows]) if bank is not None else None
    idx = torch.tensor([[0] * (plen - len(p)) + p for p, _ in rows], device=dev)  # (R, P)

    gens = [make_generator(r.options.seed) for r in requests]
    history = [list(r.prompt) for r in requests]
    produced = [0] * len(requests)
    done = [False] * len(requests)
    simple = all(len(w) == 1 for w in weights)
    fast_greedy = simple and all(
        r.options.greedy and r.options.repeat_penalty == 1.0 and not r.options.ignore_eos
        for r in requests
    )
    st = stats if stats is not None else DecodeStats()
    st.prompt_tokens += sum(len(r.prompt) for r in requests)
    t0 = time.perf_counter()
    out = trunk(idx, route=route, cache=cache, last_only=True)
    st.prompt_seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    while True:
        if keep_hidden:
            st.hidden.append(out.hidden[0].float())  # (T, C)
        logits = out.logits[:, -1]  # (R, V)
        if fast_greedy:
            picks: list[int] = logits.argmax(-1).tolist()
        else:
            picks, row = [], 0
            for i, r in enumerate(requests):
                n = len(weights[i])
                if n == 1:
                    mixed = logits[row]
                else:
                    w = torch.tensor(weights[i], device=dev, dtype=logits.dtype)
                    mixed = w @ logits[row : row + n]  # (V,) distance-weighted mixture
                picks.append(
                    sample_next(mixed, history[i], r.options, gens[i], eot_id) if not done[i] else 0
                )
                row += n
        tokens: list[int | None] = []
        reasons: list[str | None] = []
        for i, tok in enumerate(picks):
            if done[i]:
                tokens.append(None)
                reasons.append(None)
                continue
            produced[i] += 1
            history[i].append(tok)
            reason = None
            if eot_id is not None and tok == eot_id:
                reason = "stop"
            elif produced[i] >= budgets[i] or cache.pos >= cache.max_len:
                reason = "length"
            done[i] = reason is not None
            tokens.append(None if tok == eot_id else tok)
            reasons.append(reason)
        st.generated_tokens += sum(t is not None for t in tokens)
        st.decode_seconds = time.perf_counter() - t0
        yield StepResult(tokens, reasons)
        if all(done):
            return
        row_tokens = []
        for i, tok in enumerate(picks):
            row_tokens += [tok] * len(weights[i])
        nxt = torch.tensor(row_tokens, device=dev)[:, None]  # (R, 1)
        out = trunk(nxt, route=route, cache=cache, last_only=True)


def generate(
    trunk: Trunk,
    requests: Sequence[Request],
    eot_id: int | None = None,
    bank: LoRABank | None = None,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    """All generated ids per request (without the end-of-text token)."""
    outs: list[list[int]] = [[] for _ in requests]
    for step in decode(trunk, requests, eot_id, bank, stats):
        for i, t in enumerate(step.tokens):
            if t is not None:
                outs[i].append(t)
    return outs


@dataclass
class StreamChunk:
    text: str  # new text since the previous chunk
    token_ids: list[int]
    done: bool = False
    done_reason: str | None = None  # "stop" or "length" on the final chunk
    stats: DecodeStats | None = None  # on the final chunk


def stream_reply(
    trunk: Trunk,
    detokenize: Callable[[Sequence[int]], str],
    prompt: list[int],
    options: SamplingOptions,
    kernels: list[tuple[int | None, float]] | None = None,
    bank: LoRABank | None = None,
    eot_id: int | None = None,
) -> Iterator[StreamChunk]:
    """Stream one reply as text pieces, honouring `stop` strings (never emitted) and UTF-8.

    `kernels` is [(kernel, weight)]: one entry answers with that kernel (None = bare trunk),
    several mix their logits with the weights (the router's top-k mixture).
    """
    req = Request(prompt, kernels or [(None, 1.0)], options)
    stats = DecodeStats()
    ids: list[int] = []
    emitted = 0  # characters of the decoded text already sent
    pending: list[int] = []
    for step in decode(trunk, [req], eot_id, bank, stats, keep_hidden=True):
        tok, reason = step.tokens[0], step.done_reasons[0]
        if tok is not None:
            ids.append(tok)
            pending.append(tok)
        text = detokenize(ids)
        safe, stopped = sendable(text, options.stop, emitted)
        if stopped:
            yield StreamChunk(text[emitted:safe], pending, True, "stop", stats)
            return
        if reason is not None:
            yield StreamChunk(text[emitted:], pending, True, reason, stats)
            return
        if safe > emitted:
            yield StreamChunk(text[emitted:safe], pending)
            emitted, pending = safe, []


def sendable(text: str, stops: Sequence[str], sent: int) -> tuple[int, bool]:
    """How far a reply's text (all of it decoded so far, `sent` characters of it already sent)
    may be sent now: up to the first stop string, which ends the reply and is never sent
    (`(start of the stop, True)`); else all but a held-back tail (`(end, False)`), half a UTF-8
    character or what may be the beginning of a stop string, which the next token decides."""
    longest = max((len(s) for s in stops), default=0)
    hits = [i for s in stops if (i := text.find(s, max(0, sent - longest))) >= 0]
    if hits:
        return min(hits), True
    return len(text) - held_back(text, stops), False


def held_back(text: str, stops: Sequence[str]) -> int:
    """Characters at the end to hold: half a UTF-8 character, or a prefix of a stop string."""
    hold = 0
    if text.endswith("\ufffd"):
        hold = len(text) - len(text.rstrip("\ufffd"))
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return hold
