"""A request admitted to the scheduler, as async views consume it: its tokens handed over from the
scheduler thread in batches, decoded into text pieces with stop strings and UTF-8 held back, and a
final piece with the timings and the Φ/κ reading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constellation.engine import SamplingOptions, Ticket, measure, use_threads
from constellation.engine.generation import sendable
from constellation.errors import InferenceError

if TYPE_CHECKING:
    from constellation.inference import InferenceService, Loaded

# A stream's tokens reach the event loop together at most this often (the first at once): each
# hand-over wakes the loop, which then contends with the scheduler thread for the GIL.
FLUSH_EVERY_S = 0.025


@dataclass
class Piece:
    """What a running generation yields: text, and on the last piece the outcome."""

    text: str
    done: bool = False
    done_reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    # with `logprobs` asked: one entry per token that arrived with this piece's text,
    # {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]} (Ollama's shape)
    logprobs: list[dict[str, Any]] | None = None

    @property
    def route(self) -> dict[str, Any] | None:
        """Who answered and why (the done piece's first route entry: kernel, role, distance,
        answered_by, reason, radius; see `inference.route_entries`)."""
        entries = self.stats.get("route") or []
        return dict(entries[0]) if entries else None


class Generation:
    """A request admitted to the scheduler: iterate `pieces()` for its text."""

    def __init__(
        self,
        service: InferenceService,
        loaded: Loaded,
        ticket: Ticket,
        options: SamplingOptions,
        prompt_tokens: int,
        started: float,
        load_ns: int,
        keep_alive: float | None,
        route: list[dict[str, Any]],
    ) -> None:
        self.service, self.loaded, self.ticket = service, loaded, ticket
        self.options, self.prompt_tokens = options, prompt_tokens
        self.started, self.load_ns, self.keep_alive = started, load_ns, keep_alive
        self.route = route
        self.kernel = route[0]["kernel"] if route else None
        self.prompt_ids = list(ticket.request.prompt)
        # Tokens flow from the scheduler thread to the event loop from now on (handed over by
        # the scheduler thread itself as it produces them: no thread per request), and the
        # ticket leaves the queue count when it ends, even if no one ever iterates `pieces()`
        # (a client gone before its response started).
        loop = asyncio.get_running_loop()
        # batches of token ids; None, last, when the ticket has finished
        self.tokens: asyncio.Queue[list[int | None]] = asyncio.Queue()
        held: list[int | None] = []
        flushed = [-FLUSH_EVERY_S]  # when tokens were last handed to the event loop

        def deliver(token: int | None) -> None:
            held.append(token)
            if token is not None:
                now = time.perf_counter()
                if now - flushed[0] < FLUSH_EVERY_S:
                    return  # goes with the next token (or the end), at most a step later
                flushed[0] = now
            batch = held.copy()
            held.clear()
            try:
                loop.call_soon_threadsafe(self.tokens.put_nowait, batch)
            except RuntimeError:  # the event loop is closed: nobody is reading any more
                ticket.cancel()
            if token is None:
                service.finished(loaded, ticket, keep_alive)

        ticket.listen(deliver)

    def context(self) -> list[int]:
        """Prompt and reply token ids (Ollama's `context`, to continue a conversation)."""
        return self.prompt_ids + list(self.ticket.tokens)

    async def pieces(self, reading: bool = True) -> AsyncGenerator[Piece]:
        """The answer's text as it comes, then a done piece with its stats: the timings, and with
        `reading` Φ/κ too (a worker thread computes them first; without it the done piece comes
        at once and `reading()` gives them later)."""
        tokens, ticket = self.tokens, self.ticket
        decode = self.loaded.coordizer.decode
        stops = self.options.stop
        ids: list[int] = []
        scored = 0  # tokens whose log-probabilities went out with a piece
        sent = 0  # characters of the decoded text already yielded

        def piece(text: str, **done: Any) -> Piece:
            nonlocal scored
            if self.options.logprobs < 0:
                return Piece(text, **done)
            entries = [self.logprob_entry(i) for i in range(scored, len(ids))]
            scored = len(ids)
            return Piece(text, **done, logprobs=entries)

        first_token_at: float | None = None
        reason = ""
        finished = False
        try:
            ended = False
            while not ended:
                # every token that arrived since the last piece goes into one piece: under load
                # the event loop does its per-piece work once, not once per token
                batch = await tokens.get()
                while not tokens.empty():
                    batch += tokens.get_nowait()
                ended = batch[-1] is None  # None comes last, once
                new = [t for t in batch if t is not None]
                if not new:
                    break
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                ids += new
                text = decode(ids)
                end, stopped = sendable(text, stops, sent)
                if stopped:
                    ticket.cancel()
                    if end > sent:
                        yield piece(text[sent:end])
                    sent, reason = end, "stop"
                    break
                if end > sent:
                    yield piece(text[sent:end])
                    sent = end
            if not reason:
                if ticket.done_reason == "cancelled":
                    raise InferenceError("the model was unloaded while generating")
                if ticket.done_reason == "error":
                    raise InferenceError(f"generation failed: {ticket.error}")
                reason = ticket.done_reason or "stop"
                text = decode(ids)
                tail = text[sent:].replace("\ufffd", "") if stops else text[sent:]
                if tail:
                    yield piece(tail)
                    sent = len(text)
            if reading:
                stats = await asyncio.to_thread(self.measures, first_token_at, len(ids))
            else:
                stats = self.timings(first_token_at, len(ids))
            finished = True
            yield piece("", done=True, done_reason=reason, stats=stats)
        finally:
            if not finished:
                ticket.cancel()  # the client went away or an error: free the row now
            self.service.finished(self.loaded, ticket, self.keep_alive)

    def logprob_entry(self, index: int) -> dict[str, Any]:
        """Token `index` of the reply with its log-probability and its top alternatives'."""
        logprob, alternatives = self.ticket.logprobs[index]
        token = self.ticket.tokens[index]
        return {
            **self.token_entry(token, logprob),
            "top_logprobs": [self.token_entry(t, lp) for t, lp in alternatives],
        }

    def token_entry(self, token: int, logprob: float) -> dict[str, Any]:
        raw = self.loaded.coordizer.token_bytes(token)
        text = raw.decode("utf-8", errors="replace")
        return {"token": text, "logprob": logprob, "bytes": list(raw)}

    def measures(self, first_token_at: float | None, eval_count: int) -> dict[str, Any]:
        """What the answer measured until now (finished, or stopped part-way): durations, token
        counts, the route, and Φ/κ from its hidden states (blocking: call off the event loop)."""
        return {**self.timings(first_token_at, eval_count), **self.reading()}

    def timings(self, first_token_at: float | None, eval_count: int) -> dict[str, Any]:
        """Durations, token counts and the route of the answer until now (cheap)."""
        end = time.perf_counter()
        first = first_token_at or end
        stats: dict[str, Any] = {
            "total_duration": int((end - self.started) * 1e9),
            "load_duration": self.load_ns,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": max(1, int((first - self.started) * 1e9) - self.load_ns),
            "eval_count": eval_count,
            "eval_duration": max(1, int((end - first) * 1e9)),
            "ttft_ms": (first - self.started) * 1000,
            "route": self.route,
            "kernel": self.kernel,
        }
        return stats

    def reading(self) -> dict[str, Any]:
        """Φ, κ and the regime of the answer's hidden states ({} for fewer than 2 tokens);
        blocking: call off the event loop."""
        import torch

        hidden = self.ticket.hidden
        if not hidden:
            return {}
        use_threads(self.loaded.scheduler.threads)  # this is a worker thread of the event loop
        states = torch.cat(hidden, dim=0)
        if states.shape[0] < 2:
            return {}
        reading = measure(states)
        return {"phi": reading.phi, "kappa": reading.kappa, "regime": reading.regime}
