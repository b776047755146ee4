"""Continuous batching (docs/design.md §4): requests join and leave the decode batch between steps.

Active request i keeps its keys and values in slot i of one shared cache (max_batch slots of
max_seq_len positions, allocated on first use). The requests admitted in one step are prefilled
together, one forward into the next free slots (`_prefill`): each prompt starts at position 0 of
its slot and is right-padded to the longest, so causal attention keeps every real position from
the padding after it, RoPE positions are the row's own, and each row's first logits are read at
its own last position — a row computes what it computes alone (its padding's keys and values lie
past its position, where the decode steps' mask never looks and their writes overwrite them).
Prompts are grouped longest first, at most `prefill_tokens` padded positions a forward. From then
on one batched forward per step advances every active request together (`SlotCaches`: linear
layers, LoRA and attention are batched across rows, each row's attention masked to its own
positions). A request that finishes frees its row at once (the rows after it move down a slot,
so rows 0..B−1 stay contiguous) and a waiting one takes it on the next step.

A step costs what the direct decode loop (`generation.decode`) costs: with one active row it is
the same forward over that row's own `KVCache`; the LoRA route (the rows' gathered adapter
weights) is built once per batch composition, not per step; greedy rows without a repeat
penalty are picked with one argmax over the whole batch and a single device-to-host copy.
A request with a grammar (`Request.grammar`, Ollama's `format`) has its row's logits masked to
what its matcher allows before the pick, and each token fed back to it (`grammar.py`); rows with
and without one share the batch.

Use it synchronously (`submit` + `step` / `run_until_idle`) or with the background thread
(`start` / `stop`), iterating each `Ticket` for its tokens as they are produced.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .generation import Request
from .grammar import Constraint, mask_logits
from .model import KVCache, LoRABank, LoRARoute, SlotCaches, Trunk, cache_dtype
from .sampling import make_generator, sample_next
from .ticket import Ticket

__all__ = ["Scheduler", "Ticket", "auto_threads", "use_threads"]

log = logging.getLogger(__name__)

# padded positions one prefill forward takes at most (prompts longer than this go alone): enough
# for 8 chat prompts of 256 tokens in one call, while a long prompt does not make short ones
# compute its length in padding
PREFILL_TOKENS = 2048


def auto_threads() -> int:
    """Intra-op threads for serving when none are asked for: (cores − 1) // 2, at least 1 — the
    other cores stay with the event loop that streams the tokens and with training."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, ((cores or 1) - 1) // 2)


def use_threads(threads: int) -> None:
    """Run the calling thread's torch ops on `threads` intra-op threads (0: leave it as it is).

    PyTorch's OpenMP thread count belongs to the thread that sets it, so a decode loop and a
    training loop in one process each keep their own; threads that first use torch later start
    from the last count set anywhere, so a thread that cares sets its own."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass
class _Row:
    ticket: Ticket
    prompt: list[int]  # what is prefilled: the request's last max_seq_len − 1 tokens
    slot: int  # its kernel's LoRA slot in the bank
    gen: torch.Generator
    history: list[int]
    budget: int
    produced: int = 0
    last: int = 0
    cache: KVCache = field(init=False)  # its slot of the shared cache, from its prefill on

    @property
    def constraint(self) -> Constraint | None:
        return self.ticket.request.grammar

    def closing(self, c: Constraint) -> bool:
        """Whether the budget left is down to what closing its document takes (`c`: its
        grammar): it walks to the end."""
        return c.closing(min(self.budget - self.produced, self.cache.max_len - self.cache.pos))


class Scheduler:
    def __init__(
        self,
        trunk: Trunk,
        bank: LoRABank | None = None,
        eot_id: int | None = None,
        max_batch: int = 8,
        keep_hidden: bool = False,
        threads: int = 0,
        prefill_tokens: int = PREFILL_TOKENS,
    ) -> None:
        """`threads`: intra-op threads for the decode steps of the scheduler's thread (0: leave
        PyTorch's setting); `prefill_tokens`: padded positions of one batched prefill at most."""
        assert max_batch >= 1, "max_batch must be ≥ 1"
        assert threads >= 0, "threads must be ≥ 0"
        assert prefill_tokens >= 1, "prefill_tokens must be ≥ 1"
        self.trunk, self.bank, self.eot_id = trunk, bank, eot_id
        self.max_batch, self.keep_hidden, self.threads = max_batch, keep_hidden, threads
        self.prefill_tokens = prefill_tokens
        self.pending: deque[Ticket] = deque()
        self.active: list[_Row] = []  # row i's cache is slot i of self._shared
        self._shared: KVCache | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        # the LoRA route of the current batch, rebuilt only when its slots change
        self._route_slots: tuple[int, ...] | None = None
        self._route: LoRARoute | None = None

    # ---- submission ------------------------------------------------------------------------
    def submit(self, request: Request) -> Ticket:
        if len(request.kernels) != 1:
            raise ValueError("kernels: the scheduler serves one kernel per request (use decode())")
        kernel = request.kernels[0][0]
        if kernel is not None and self.bank is None:
            raise ValueError("kernels: a bank is needed to serve kernel adapters")
        if max(request.prompt) >= self.trunk.cfg.vocab_size:
            raise ValueError("prompt: token id beyond the trunk's vocabulary")
        ticket = Ticket(request)
        with self._lock:
            self.pending.append(ticket)
        self._wake.set()
        return ticket

    # ---- one iteration ---------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> bool:
        """Admit waiting requests (prefilled together), then advance every active request by
        one token. Returns False when there was nothing to do."""
        worked = self._drop_cancelled()
        while len(self.active) < self.max_batch:
            with self._lock:
                n = min(self.max_batch - len(self.active), len(self.pending))
                waiting = [self.pending.popleft() for _ in range(n)]
            if not waiting:
                break
            self._admit(waiting)
            worked = True
        if self.active:
            try:
                self._decode_step()
            except (
                Exception
            ) as exc:  # a batched step cannot say whose: its rows fail, not the thread
                log.exception(
                    "engine: a decode step failed; its %d request(s) end", len(self.active)
                )
                failed, self.active = [row.ticket for row in self.active], []
                self._route_slots = self._route = None
                self._fail(failed, exc)
            worked = True
        return worked

    @staticmethod
    def _fail(tickets: list[Ticket], exc: BaseException) -> None:
        for ticket in tickets:
            ticket.error = f"{type(exc).__name__}: {exc}"[:300]
            ticket._finish("error")

    def _drop_cancelled(self) -> bool:
        """Finish cancelled requests, queued or decoding, freeing their rows."""
        with self._lock:
            gone = [t for t in self.pending if t.cancelled]
            if gone:
                self.pending = deque(t for t in self.pending if not t.cancelled)
        gone += [row.ticket for row in self.active if row.ticket.cancelled]
        if not gone:
            return False
        self._keep([row for row in self.active if not row.ticket.cancelled])
        for ticket in gone:
            ticket._finish("cancelled")
        return True

    def run_until_idle(self) -> None:
        while self.step():
            pass

    def _admit(self, tickets: list[Ticket]) -> None:
        """Prefill waiting requests into the next free slots, in groups of similar length (the
        longest first) of at most `prefill_tokens` padded positions. A failure is its own
        request's while its row is made, its group's in the group's forward."""
        rows: list[_Row] = []
        for ticket in tickets:
            try:
                rows.append(self._row(ticket))
            except Exception as exc:  # this request's failure: the others go on
                log.exception("engine: a request failed while it was admitted")
                self._fail([ticket], exc)
        rows.sort(key=lambda row: len(row.prompt), reverse=True)
        while rows:
            n = max(1, min(len(rows), self.prefill_tokens // len(rows[0].prompt)))
            group, rows = rows[:n], rows[n:]
            try:
                self._prefill(group)
            except Exception as exc:  # one forward cannot say whose: its group fails
                log.exception("engine: a prefill failed; its %d request(s) end", len(group))
                self._fail([row.ticket for row in group], exc)

    def _row(self, ticket: Ticket) -> _Row:
        req, max_seq = ticket.request, self.trunk.cfg.max_seq_len
        n = req.options.num_predict
        slot = self.bank.slots_for([req.kernels[0][0]])[0] if self.bank is not None else 0
        prompt = req.prompt[-(max_seq - 1) :]
        gen = make_generator(req.options.seed)
        return _Row(ticket, prompt, slot, gen, list(req.prompt), n if n >= 0 else max_seq)

    def _prefill(self, rows: list[_Row]) -> None:
        """One forward over `rows`' prompts into slots len(active).., right-padded to the
        longest (see the module's docstring); each row's first token; the rows still going join
        the active ones."""
        cfg, dev = self.trunk.cfg, self.trunk.device
        if self._shared is None:
            dtype = cache_dtype(self.trunk.dtype, dev)
            self._shared = KVCache(cfg, self.max_batch, cfg.max_seq_len, dtype, dev)
        first, lengths = len(self.active), [len(row.prompt) for row in rows]
        width = max(lengths)
        for i, row in enumerate(rows):
            size = min(cfg.max_seq_len, lengths[i] + row.budget)
            row.cache = KVCache.slot(self._shared, first + i, size)
        block = KVCache.slot(self._shared, first, width, count=len(rows))
        idx = torch.tensor([r.prompt + [0] * (width - len(r.prompt)) for r in rows], device=dev)
        ends = torch.tensor(lengths, device=dev) - 1  # (n,) each row's last prompt position
        slots = tuple(row.slot for row in rows)
        if not self.active:  # these rows are the batch: its decode steps use the same route
            route = self._route_for(slots)
        else:
            route = LoRARoute.for_rows(self.bank, slots) if self.bank is not None else None
        out = self.trunk(idx, route=route, cache=block, last_only=True, ends=ends)  # (n, 1, V)
        for i, row in enumerate(rows):
            row.cache.pos = lengths[i]
            if self.keep_hidden:  # the prompt's positions, without the padding
                row.ticket.hidden.append(out.hidden[i, : lengths[i]].float())
        still = self._sample_rows(rows, out.logits[:, -1])
        self._keep(self.active + [row for row in still if row is not None])

    def _route_for(self, slots: tuple[int, ...]) -> LoRARoute | None:
        """The rows' LoRA route; kept while the batch's slots stay the same, so the adapter
        weights are gathered (and cast) once per batch composition instead of every step."""
        if self.bank is None:
            return None
        if slots != self._route_slots:
            self._route = LoRARoute.for_rows(self.bank, list(slots))
            self._route_slots = slots
        return self._route

    def _decode_step(self) -> None:
        rows = self.active
        route = self._route_for(tuple(r.slot for r in rows))
        if len(rows) == 1:
            # the direct loop's step: one token over the row's own cache, no ragged attention
            row = rows[0]
            idx = torch.tensor([[row.last]], device=self.trunk.device)
            out = self.trunk(idx, route=route, cache=row.cache, last_only=True)
        else:
            assert self._shared is not None
            idx = torch.tensor([[r.last] for r in rows], device=self.trunk.device)  # (B, 1)
            caches = SlotCaches(self._shared, [r.cache for r in rows])
            out = self.trunk(idx, route=route, cache=caches)
        if self.keep_hidden:
            hidden = out.hidden.float()  # (B, 1, C), one copy for the batch
            for i, row in enumerate(rows):
                row.ticket.hidden.append(hidden[i])
        self._keep([row for row in self._sample_rows(rows, out.logits[:, -1]) if row])

    def _keep(self, rows: list[_Row]) -> None:
        """Make `rows` (in slot order) the active ones: a row whose slot is past its place moves
        down into it (its keys and values copied; the slot it leaves is free or already moved)."""
        for i, row in enumerate(rows):
            if row.cache.index != i:
                assert self._shared is not None and row.cache.index > i
                shared, old = self._shared, row.cache
                shared.k[:, i, :, : old.pos] = shared.k[:, old.index, :, : old.pos]
                shared.v[:, i, :, : old.pos] = shared.v[:, old.index, :, : old.pos]
                row.cache = KVCache.slot(shared, i, old.max_len)
                row.cache.pos = old.pos
        self.active = rows

    def _sample_rows(self, rows: list[_Row], logits: Tensor) -> list[_Row | None]:
        """Next token of every row from logits (B, V); the rows still going (None: finished).
        Rows with a grammar get their disallowed logits masked first (the others untouched),
        but for a row walking to its document's end along a known walk (its next token is the
        walk's, its mask is not needed unless it reports log-probabilities). Greedy rows
        without a repeat penalty share one argmax and one copy to the host."""
        grammars = {i: c for i, r in enumerate(rows) if (c := r.constraint) is not None}
        walking = [i for i, c in grammars.items() if rows[i].closing(c)]
        closers = {i: tok for i in walking if (tok := grammars[i].planned()) is not None}
        masked = [
            i for i in grammars if i not in closers or rows[i].ticket.request.options.logprobs >= 0
        ]
        if masked:
            part = logits if len(masked) == len(rows) else logits[masked]
            mask_logits([grammars[i].matcher for i in masked], part)
            if part is not logits:
                logits[masked] = part
        for i in walking:
            if i not in closers and (tok := grammars[i].closer(logits[i])) is not None:
                closers[i] = tok
        fast = [_plain_greedy(r) or i in closers for i, r in enumerate(rows)]
        picks: list[int] = logits.argmax(-1).tolist() if any(fast) else []
        picks = [closers.get(i, p) for i, p in enumerate(picks)] if closers else picks
        still: list[_Row | None] = []
        for i, row in enumerate(rows):
            done = self._take(row, picks[i], logits[i]) if fast[i] else self._sample(row, logits[i])
            still.append(None if done else row)
        return still

    def _sample(self, row: _Row, logits: Tensor) -> bool:
        """Draw the row's next token, emit it; True when the request has finished (a failure
        to draw finishes this row alone, with "error")."""
        opts = row.ticket.request.options
        try:
            tok = sample_next(logits, row.history, opts, row.gen, self.eot_id)
        except Exception as exc:
            log.exception("engine: sampling failed for one request")
            self._fail([row.ticket], exc)
            return True
        return self._take(row, tok, logits)

    def _take(self, row: _Row, tok: int, logits: Tensor) -> bool:
        """Record and emit the row's next token (drawn from `logits`, (V,)); True when the
        request has finished."""
        if (top := row.ticket.request.options.logprobs) >= 0 and tok != self.eot_id:
            row.ticket.logprobs.append(_logprobs(logits, tok, top))
        row.produced += 1
        row.history.append(tok)
        row.last = tok
        if self.eot_id is not None and tok == self.eot_id:
            row.ticket._finish("stop")
            return True
        row.ticket._emit(tok)
        if (constraint := row.constraint) is not None:
            if not constraint.consume(tok):  # never after the mask; say so if it does
                self._fail([row.ticket], RuntimeError(f"grammar: {constraint.error()}"))
                return True
            if constraint.stopped:  # the document is whole: only end of text is left
                row.ticket._finish("stop")
                return True
        if row.produced >= row.budget or row.cache.pos >= row.cache.max_len:
            row.ticket._finish("length")
            return True
        return False

    # ---- background thread -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="engine-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        use_threads(self.threads)
        while self._running:
            try:
                worked = self.step()
            except Exception:  # never the thread: every request after this one must be served
                log.exception("engine: a scheduler step failed")
                worked = False
            if not worked:
                self._wake.wait(0.05)
                self._wake.clear()


def _logprobs(logits: Tensor, tok: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """The token's log-probability under the model's distribution for this step (the logits'
    softmax, after a grammar's mask, before temperature and the other sampling filters) and the
    `top` most likely tokens'."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    best = torch.topk(lp, top) if top else None
    pairs = zip(best.indices.tolist(), best.values.tolist(), strict=True) if best else ()
    return float(lp[tok]), [(t, v) for t, v in pairs if v != float("-inf")]  # not the masked


def _plain_greedy(row: _Row) -> bool:
    """Greedy with no repeat penalty: the next token is the argmax of the logits."""
    opts = row.ticket.request.options
    plain = opts.repeat_penalty == 1.0 or opts.repeat_last_n == 0
    return opts.greedy and plain and not opts.ignore_eos
