"""Who may call the Ollama-shaped inference API.

Like Ollama itself, the API is open while the server listens only on loopback. As soon as it binds
beyond loopback it requires ``Authorization: Bearer $QIG_API_KEY``; `qig up` refuses to bind there
without a key.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

AsyncView = Callable[..., Awaitable[HttpResponseBase]]


def api_key_ok(request: HttpRequest) -> bool:
    if not settings.API_KEY_REQUIRED:
        return True
    expected = settings.API_KEY
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


def ollama_access(view: AsyncView) -> AsyncView:
    """Guard an async Ollama/OpenAI view with the loopback-or-API-key rule."""

    @functools.wraps(view)
    async def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        if not api_key_ok(request):
            response = JsonResponse(
                {"error": "unauthorized: send Authorization: Bearer <QIG_API_KEY>"}, status=401
            )
            response["WWW-Authenticate"] = "Bearer"
            return response
        return await view(request, *args, **kwargs)

    return guarded
