"""Database work on threads outside Django's request cycle.

Django drops a connection that died (the database restarted) or outlived `CONN_MAX_AGE` at the
start and end of each request. A thread that is no request's — `asyncio.to_thread` loading the
model, the readiness check's executor thread, the sync thread storing an interaction after its
response — keeps its connection for the life of the process, and after a PostgreSQL restart
every query on it failed until the process restarted (bench.chaos: `/readyz` 503 and chat 500
for good). `usable_connections()` does for such a thread what a request's start does.
"""

from __future__ import annotations

from django.db import connections


def usable_connections() -> None:
    """Close this thread's connections that are broken or too old (a new one opens on the next
    query), as Django does between requests. One inside a transaction is left alone."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
