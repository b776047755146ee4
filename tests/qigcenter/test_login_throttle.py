"""Brute force: wrong passwords are counted per address and per account name; past 20 in a
minute, sign-in and token requests answer 429 with Retry-After, the right password included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from qigcenter.auth_api import LoginThrottle
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

# Documentation addresses (RFC 5737): nothing else in the suite signs in from them.
ATTACKER, OTHER, THIRD = "192.0.2.10", "192.0.2.11", "192.0.2.12"


@pytest.fixture(autouse=True)
def forget_failures(settings) -> Iterator[None]:
    """The counters live in the cache (Redis in services mode, shared with live products):
    leave none behind. (A fast hasher: a hundred sign-ins are not what is tested here.)"""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def keys() -> list[str]:
        class Seen:  # what LoginThrottle.keys reads of a request
            def __init__(self, addr: str) -> None:
                self.META = {"REMOTE_ADDR": addr}

        found: list[str] = []
        for addr in (ATTACKER, OTHER, THIRD):
            for name in ("dev", "victim", "nobody"):
                found += LoginThrottle.keys(Seen(addr), name)  # type: ignore[arg-type]
        return found

    cache.delete_many(keys())
    yield
    cache.delete_many(keys())


def token(addr: str, username: str, password: str) -> tuple[int, dict, str | None]:
    answer = APIClient(REMOTE_ADDR=addr).post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )
    return answer.status_code, answer.json(), answer.headers.get("Retry-After")


def test_twenty_wrong_passwords_then_429_with_retry_after_even_for_the_right_one(
    developer,
) -> None:
    for _ in range(20):
        assert token(ATTACKER, "dev", "wrong")[0] == 400
    status, body, retry_after = token(ATTACKER, "dev", "wrong")
    assert status == 429 and "throttled" in body["detail"]
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert token(ATTACKER, "dev", PASSWORD)[0] == 429  # the right password waits too
    # the session sign-in shares the count
    client = Client(REMOTE_ADDR=ATTACKER)
    signed = client.post(
        "/api/v1/auth/login/",
        {"username": "dev", "password": PASSWORD},
        content_type="application/json",
    )
    assert signed.status_code == 429 and signed.headers["Retry-After"]


def test_an_account_is_protected_from_many_addresses_and_others_are_not_held_back(
    developer, django_user_model
) -> None:
    django_user_model.objects.create_user(username="victim", password=PASSWORD)
    for i in range(20):
        assert token((ATTACKER, OTHER)[i % 2], "victim", "wrong")[0] == 400
    assert token(THIRD, "victim", PASSWORD)[0] == 429  # per account name, whoever asks
    assert token(THIRD, "dev", PASSWORD)[0] == 200  # another account from a clean address


def test_successful_sign_ins_are_not_counted(developer) -> None:
    for _ in range(30):
        assert token(OTHER, "dev", PASSWORD)[0] == 200
    for _ in range(19):
        assert token(OTHER, "nobody", "wrong")[0] == 400
    assert token(OTHER, "dev", PASSWORD)[0] == 200  # 19 failures: still under the limit
