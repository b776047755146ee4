"""Process shutdown, as far as long-running work needs to know.

When the process that trains is asked to stop (Ctrl-C or SIGTERM to `qig up`), a running job
should stop at its next step, save a checkpoint there and go back to the queue — not be killed
and redo up to 50 steps next time. Whoever learns of the shutdown calls ``begin_shutdown``; the
training runner polls ``shutting_down``.

Who calls it: in embedded mode, Twisted's "before shutdown" trigger in the daphne process
(``qigcenter.embedded``); in services mode, the SIGTERM handler of each Celery pool process
(``learning.tasks``).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

shutting_down = threading.Event()


def begin_shutdown(why: str) -> None:
    if not shutting_down.is_set():
        log.info("shutting down (%s): running jobs hand back at their next step", why)
    shutting_down.set()
