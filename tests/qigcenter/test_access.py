from __future__ import annotations

import pytest
from django.test import Client


def test_it_leaves_the_ollama_api_open_on_loopback(client: Client, settings) -> None:
    settings.API_KEY_REQUIRED = False
    response = client.get("/api/version")
    assert response.status_code == 200
    assert response.json()["version"].count(".") == 2


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic c2VjcmV0LWtleQ=="])
def test_it_requires_the_api_key_beyond_loopback(client: Client, settings, header) -> None:
    settings.API_KEY_REQUIRED, settings.API_KEY = True, "secret-key"
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/version", **extra)
    assert response.status_code == 401
    assert "QIG_API_KEY" in response.json()["error"]


def test_it_accepts_the_right_api_key_beyond_loopback(client: Client, settings) -> None:
    settings.API_KEY_REQUIRED, settings.API_KEY = True, "secret-key"
    assert client.get("/api/version", HTTP_AUTHORIZATION="Bearer secret-key").status_code == 200
