"""The inference API's HTTP path: Ollama-shaped (`/api/*` but `/api/v1/`) and OpenAI-shaped
(`/v1/*`) requests go through Django with a middleware chain of their own, async end to end.

Under ASGI, Django runs each hook of a `MiddlewareMixin` middleware through a thread hop, or the
whole chain in a worker thread when one middleware is sync-only (WhiteNoise is): about 1.8 ms per
request on the 2-core machine, against 1.2 ms for the whole round trip without it (docs/inference
.md). These endpoints need none of it in a thread: `InferenceMiddleware` applies the same
security headers (SecurityMiddleware, CommonMiddleware and XFrameOptionsMiddleware's hooks are
header logic, called inline), attaches the session and the lazy user as SessionMiddleware and
AuthenticationMiddleware do (the user is loaded only when a view awaits `request.auser()`, with
Django's async session API), and skips CSRF (the views are exempt: API key or loopback) and
messages. Sessions are read, never saved: these views do not change them. In place of CSRF, a
browser's request from another site's page is refused before any view (qigcenter/origins.py).
"""

from __future__ import annotations

from functools import partial
from importlib import import_module
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.contrib.auth import aget_user, get_user
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.functional import SimpleLazyObject

from qigcenter import origins


def is_inference_path(path: str) -> bool:
    return path.startswith("/v1/") or (path.startswith("/api/") and not path.startswith("/api/v1/"))


class InferenceMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)
        # header logic only (no I/O): their hooks run inline, in the order Django would
        self.security = SecurityMiddleware(get_response)
        self.common = CommonMiddleware(get_response)
        self.frames = XFrameOptionsMiddleware(get_response)
        self.sessions = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        early = (
            origins.inference_gate(request)  # a page of another site: 403; a preflight: 204
            or self.security.process_request(request)
            or self.common.process_request(request)
        )
        if early is not None:
            return origins.add_cors(request, early)
        request.session = self.sessions(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        request.user = SimpleLazyObject(lambda: get_user(request))  # type: ignore[assignment]
        request.auser = partial(aget_user, request)
        response: Any = await self.get_response(request)
        response = self.frames.process_response(request, response)
        response = self.common.process_response(request, response)
        return origins.add_cors(request, self.security.process_response(request, response))


class InferenceHandler(ASGIHandler):
    """Django's ASGI handler with `InferenceMiddleware` as its only middleware."""

    def load_middleware(self, is_async: bool = False) -> None:
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = [f"{__name__}.{InferenceMiddleware.__name__}"]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured
