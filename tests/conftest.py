"""Shared fixtures: real users in the real test database, real API clients."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-staple"


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
