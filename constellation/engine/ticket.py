"""A request submitted to the scheduler (`scheduler.py`): the handle its client holds — iterate it
for token ids, or `listen` to it — and what the scheduler records on it as it goes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from torch import Tensor

from .generation import Request


class Ticket:
    """A submitted request: iterate it for token ids, or `listen` to it; `done_reason` is set
    when it finishes."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.tokens: list[int] = []
        self.done_reason: str | None = None
        self.hidden: list[Tensor] = []  # final hidden states (T, C) per step, for Φ/κ
        # with options.logprobs ≥ 0: per token, its log-probability and the top alternatives'
        # (token, log-probability), set before the token is emitted
        self.logprobs: list[tuple[float, list[tuple[int, float]]]] = []
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._listener: Callable[[int | None], None] | None = None
        self.cancelled = False
        self.error = ""  # why it failed, when done_reason is "error"

    def cancel(self) -> None:
        """Give up on this request (its client went away): the scheduler frees its row, or
        drops it from the queue, at its next step; the ticket finishes with "cancelled"."""
        self.cancelled = True

    def listen(self, on_token: Callable[[int | None], None]) -> None:
        """Call `on_token(token)` for every token, those produced so far first, then
        `on_token(None)` once when the ticket finishes. Later calls come from the scheduler's
        thread, right as each token is produced (no thread of its own per request): keep it
        short and let it not raise. One listener per ticket."""
        with self._lock:
            assert self._listener is None, "a ticket has one listener"
            for token in self.tokens:
                on_token(token)
            if self._done.is_set():
                on_token(None)
            else:
                self._listener = on_token

    def _emit(self, token: int) -> None:
        with self._lock:
            self.tokens.append(token)
            listener = self._listener
        self._queue.put(token)
        if listener is not None:
            listener(token)

    def _finish(self, reason: str) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self.done_reason = reason
            self._done.set()
            listener = self._listener
        self._queue.put(None)
        if listener is not None:
            listener(None)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def __iter__(self) -> Iterator[int]:
        while True:
            tok = self._queue.get()
            if tok is None:  # put by _finish, after every token
                return
            yield tok
