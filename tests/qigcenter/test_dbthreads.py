"""A thread outside Django's request cycle (asyncio.to_thread loading the model, the readiness
check, storing an interaction after its response) renews a connection the database dropped, as
a request does: after a PostgreSQL restart the product recovers instead of failing for good."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connection, connections

from qigcenter.dbthreads import usable_connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="services mode: PostgreSQL ends a backend on pg_terminate_backend, like a restart",
    ),
]


@pytest.fixture
def kept_connections() -> Iterator[None]:
    """The product keeps connections 60 s (QIG_DB_CONN_MAX_AGE); the pytest process keeps none.
    Kept, a dropped one is not renewed for its age, only because it is broken."""
    shared = connections.settings["default"]
    before = shared["CONN_MAX_AGE"]
    shared["CONN_MAX_AGE"] = 60
    yield
    shared["CONN_MAX_AGE"] = before


def backend_pid(renew: bool) -> int:
    if renew:
        usable_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_thread_renews_a_connection_the_database_dropped(kept_connections: None) -> None:
    with ThreadPoolExecutor(1) as thread:  # one thread, its connection kept between calls
        first = thread.submit(backend_pid, True).result()
        assert thread.submit(backend_pid, True).result() == first  # kept while it works
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        with pytest.raises(DatabaseError):  # the query that finds it gone fails, as in a request
            thread.submit(backend_pid, False).result()
        renewed = thread.submit(backend_pid, True).result()
        assert renewed != first
        thread.submit(connections.close_all).result()
