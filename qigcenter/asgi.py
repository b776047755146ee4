"""ASGI entry point: HTTP through Django, websockets through Channels, one port. The inference
API's HTTP requests take a Django handler with a middleware chain of their own
(qigcenter/inference_http.py)."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
django_http = get_asgi_application()  # sets Django up before the consumers are imported

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from federation.consumers import FederationConsumer  # noqa: E402
from qigcenter import embedded  # noqa: E402
from qigcenter.inference_http import InferenceHandler, is_inference_path  # noqa: E402
from qigcenter.origins import SameOriginSockets  # noqa: E402

inference_http = InferenceHandler()
# Edges are not browsers: they sign every message, send no Origin and hold no session, so their
# endpoint sits outside the origin check and the session middleware (docs/federation.md).
federation_ws = FederationConsumer.as_asgi()

router = ProtocolTypeRouter(
    {
        "http": django_http,
        # the Host must be ours, and a browser's Origin this node's own site, port included
        "websocket": AllowedHostsOriginValidator(
            SameOriginSockets(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    embedded.remember_web_loop(asyncio.get_running_loop())
    if scope["type"] == "http" and is_inference_path(scope["path"]):
        await inference_http(scope, receive, send)  # its own middleware (inference_http.py)
    elif scope["type"] == "websocket" and scope["path"] == "/ws/federation/":
        await federation_ws(scope, receive, send)
    else:
        await router(scope, receive, send)


if settings.EMBEDDED_WORKER and os.environ.get("QIG_START_EMBEDDED_WORKER") == "1":
    embedded.start()

# Everything loaded so far (Django, torch, the apps) lives as long as the process: keep it out of
# the cyclic collector's full passes, which otherwise stop every thread for 150-200 ms every few
# seconds under load (measured with bench.federation, docs/federation.md "Under load").
gc.freeze()
