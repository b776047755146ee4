"""Is anyone using the node? The requests being answered now and the time of the last one, kept
in Django's cache so that every process sees them: Redis in services mode (the web process
answers, a Celery worker runs the learning loop), the process's own memory in embedded mode (the
loop runs in the web process). The learning loop reads them to run only when the node is idle
(docs/training.md, "The autonomous loop").

`serving.answer` marks a request as begun when it is admitted and ended when its stream ends
(however it ends). A web process that dies mid-request leaves its requests counted: `qig up`
clears the count when the web server starts, and a count that has not moved for `STALE_S` is not
believed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache

IN_FLIGHT = "qig:activity:in_flight"
LAST = "qig:activity:last"  # unix time of the last request's start or end
STALE_S = 3600.0  # no request lasts this long: a count untouched for it is a dead process's


@dataclass(frozen=True)
class Activity:
    in_flight: int  # requests being answered now
    last_at: float | None  # unix time of the last request's start or end (None: none yet)

    def quiet_for(self, now: float | None = None) -> float | None:
        """Seconds since the last request started or ended (None: no request yet)."""
        if self.last_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.last_at)


def begin() -> None:
    """A request was admitted."""
    cache.set(LAST, time.time(), None)
    cache.add(IN_FLIGHT, 0, None)
    cache.incr(IN_FLIGHT)


def end() -> None:
    """A request's stream ended (done, cancelled or failed)."""
    cache.set(LAST, time.time(), None)
    try:
        if cache.decr(IN_FLIGHT) < 0:
            cache.set(IN_FLIGHT, 0, None)
    except ValueError:  # cleared meanwhile (the server restarted): nothing to count down
        pass


def reset() -> None:
    """The web server starts: no request of a previous process is still being answered."""
    cache.set(IN_FLIGHT, 0, None)


def now() -> Activity:
    values = cache.get_many([IN_FLIGHT, LAST])
    last = values.get(LAST)
    in_flight = int(values.get(IN_FLIGHT) or 0)
    if in_flight and last is not None and time.time() - float(last) > STALE_S:
        in_flight = 0
    return Activity(max(0, in_flight), None if last is None else float(last))
