"""Which web pages may call this node from a browser.

A browser sends `Origin` with every cross-site request, and lets a page send a "simple" request
(a POST with `Content-Type: text/plain`, no preflight) to any address, including this node on
loopback. Without a check, any site the user visits could create a model config with its own
SYSTEM prompt, or run generations, through the open Ollama-shaped API.

- The inference API (`/api/*` but `/api/v1/`, `/v1/*`) follows Ollama's `OLLAMA_ORIGINS`: a
  request without `Origin` (curl, the Python and JS clients, Open WebUI's server) passes; a
  request from a page passes when the page is this node itself, a page on this machine
  (`http(s)://localhost`, `127.0.0.1`, `[::1]`, `0.0.0.0`, any port), a desktop app's
  (`app://`, `file://`, `tauri://`, `vscode-webview://`), or matches a pattern in `QIG_ORIGINS`
  (comma-separated, `*` wildcards: `http://192.168.1.7:*`, `https://chat.example.com`, or `*`).
  Any other gets 403 before the view runs. Allowed pages get CORS headers and preflights.
- The dashboard's websockets accept a browser's handshake only from this node's own origin
  (scheme, host and port), or from `QIG_CSRF_TRUSTED_ORIGINS`.
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
APP_SCHEMES = ("app", "file", "tauri", "vscode-webview")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
CORS_METHODS = "GET, POST, DELETE, HEAD, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Accept, User-Agent, X-Requested-With, X-Stainless-Lang"


def _site(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin or URL; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS.get(scheme)


def same_origin(origin: str, host_header: str) -> bool:
    """`origin` is the site this request was sent to: its Host's name and port (a Host without a
    port, as a TLS proxy passes it, is the origin scheme's default port)."""
    page = _site(origin)
    try:
        this = urlsplit(f"//{host_header.strip()}")
        this_host, this_port = this.hostname, this.port
    except ValueError:
        return False
    if page is None or this_host is None or page[1] != this_host.lower():
        return False
    return page[2] == (this_port or DEFAULT_PORTS.get(page[0]))


def page_allowed(origin: str, host_header: str) -> bool:
    """May a page of `origin` call the inference API (see the module's docstring)?"""
    if same_origin(origin, host_header):
        return True
    site = _site(origin)
    if site is not None:
        scheme, host, _ = site
        if scheme in APP_SCHEMES or (scheme in ("http", "https") and host in LOCAL_HOSTS):
            return True
    wanted = origin.strip().lower()
    return any(fnmatch.fnmatchcase(wanted, pattern.lower()) for pattern in settings.ORIGINS)


def inference_gate(request: HttpRequest) -> HttpResponseBase | None:
    """The answer for a browser request the inference API refuses, or for a preflight; None to
    go on (then `add_cors` marks the response)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if not page_allowed(origin, request.META.get("HTTP_HOST", "")):
        return JsonResponse(
            {
                "error": f"origin {origin[:200]!r} is not allowed to call this API: a web page "
                "may call it only from this machine or from QIG_ORIGINS (docs/configuration.md)"
            },
            status=403,
        )
    if request.method == "OPTIONS":
        preflight = HttpResponse(status=204)
        preflight["Access-Control-Allow-Methods"] = CORS_METHODS
        preflight["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", CORS_HEADERS
        )
        preflight["Access-Control-Max-Age"] = "86400"
        return add_cors(request, preflight)
    return None


def add_cors(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Let an allowed page read `response` (CORS); a refused one gets no CORS header."""
    origin = request.headers.get("Origin")
    if origin is not None and page_allowed(origin, request.META.get("HTTP_HOST", "")):
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    return response


def socket_allowed(scope: dict[str, Any]) -> bool:
    """A websocket handshake from a browser comes from this node's own pages (or a trusted
    origin); one without Origin is not a browser's (the checks after it still apply)."""
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin")
    if origin is None:
        return True
    page = origin.decode("latin-1")
    if same_origin(page, headers.get(b"host", b"").decode("latin-1")):
        return True
    return _site(page) in {_site(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS}


class SameOriginSockets:
    """ASGI middleware: refuse (close before accept) a browser's websocket from another page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not socket_allowed(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})  # before accept: HTTP 403
            return
        await self.app(scope, receive, send)
