"""Which pages may call the inference API from a browser (qigcenter/origins.py)."""

from __future__ import annotations

import pytest

from qigcenter.origins import page_allowed, same_origin


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:9200", True),  # the node's own pages
        ("http://localhost:5173", True),  # this machine, any port (Ollama's default)
        ("https://[::1]:8443", True),
        ("http://0.0.0.0:8080", True),
        ("app://obsidian.md", True),
        ("vscode-webview://abc", True),
        ("http://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),  # a sandboxed frame or a file page's opaque origin
        ("http://192.168.1.7:3000", False),
        ("http://192.168.1.7:3000", ["http://192.168.1.7:*"]),
        ("https://chat.example.com", ["https://chat.example.com"]),
        ("https://evil.example", ["https://chat.example.com"]),
        ("https://anything.example", ["*"]),
    ],
)
def test_pages_allowed_are_this_machines_the_nodes_and_qig_origins(
    settings, origin: str, allowed: bool | list[str]
) -> None:
    settings.ORIGINS = allowed if isinstance(allowed, list) else []
    expected = allowed if isinstance(allowed, bool) else origin != "https://evil.example"
    assert page_allowed(origin, "127.0.0.1:9200") is expected


def test_same_origin_compares_host_and_port() -> None:
    assert same_origin("http://qig.example.com:9200", "qig.example.com:9200")
    assert same_origin("https://qig.example.com", "qig.example.com")  # behind a TLS proxy
    assert not same_origin("http://qig.example.com:9300", "qig.example.com:9200")
    assert not same_origin("http://qig.example.com", "qig.example.com:9200")
    assert not same_origin("http://[bad", "qig.example.com")
