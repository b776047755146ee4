"""Shared fixtures: real users in the real test database, real API clients."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-staple"

# In this process only: each database call closes its connection. The product keeps them open
# (QIG_DB_CONN_MAX_AGE), but a connection kept by one of Channels' executor threads would hold
# the test database when it is dropped (PostgreSQL refuses). The processes tests start keep the
# product's default.
settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user(
        username="ada", password=PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def developer(django_user_model):
    return django_user_model.objects.create_user(username="dev", password=PASSWORD)


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def dev_api(developer) -> APIClient:
    client = APIClient()
    client.force_authenticate(developer)
    return client


@contextlib.contextmanager
def fresh_database(label: str) -> Iterator[dict[str, str]]:
    """With PostgreSQL, a fresh database named after `label`, dropped afterwards: the environment
    to start a live product with. Empty in embedded mode, where the product's data dir holds its
    own SQLite file."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield {}
        return
    name = f"qig_{re.sub(r'[^a-z0-9]+', '_', label.lower())[:40]}_{os.getpid()}"
    drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(f"CREATE DATABASE {name}")
    yield {"DATABASE_URL": url.rsplit("/", 1)[0] + "/" + name}
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(drop)


@pytest.fixture
def own_database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A fresh database for a live product of the test's own (the tests' database stays
    untouched, and no row or job left by another test is in it)."""
    with fresh_database(request.node.name) as env:
        yield env


@pytest.fixture(scope="module")
def module_database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The same for a live product a module's tests share."""
    with fresh_database(request.module.__name__.rsplit(".", 1)[-1]) as env:
        yield env
