"""The inference API's own HTTP path (qigcenter/inference_http.py), through the ASGI application
as daphne calls it: same headers and the same signed-in user as Django's middleware chain gives,
no thread hop for the middleware."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path

from qigcenter import inference_http
from qigcenter.urls import urlpatterns as project_urls


async def whoami(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


urlpatterns = [path("api/whoami", whoami), *project_urls]


async def call(path: str, cookie: str = "") -> tuple[int, dict[str, str], bytes]:
    from qigcenter.asgi import application

    headers = [(b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 9200),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start: Any = await app.receive_output(10)
    body = b""
    while True:
        message: Any = await app.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await app.wait(10)  # let the request finish (request_finished closes its DB connection)
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


@pytest.mark.parametrize(
    ("path", "inference"),
    [("/api/generate", True), ("/v1/models", True), ("/api/v1/jobs/", False), ("/", False)],
)
def test_which_paths_take_the_inference_handler(path: str, inference: bool) -> None:
    assert inference_http.is_inference_path(path) is inference


@pytest.mark.django_db(transaction=True)
async def test_the_inference_path_answers_with_the_chains_security_headers() -> None:
    status, headers, body = await call("/api/version")
    assert status == 200 and b'"version"' in body
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    _, django_headers, _ = await call("/healthz")  # Django's own chain, for comparison
    for name in ("x-content-type-options", "referrer-policy", "x-frame-options"):
        assert django_headers[name] == headers[name]


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls(__name__)
async def test_a_signed_in_browser_is_the_same_user_on_the_inference_path() -> None:
    from asgiref.sync import sync_to_async

    def sign_in() -> str:
        get_user_model().objects.create_user("inference-http", password="pw-1234567")
        browser = Client()
        assert browser.login(username="inference-http", password="pw-1234567")
        connections.close_all()  # this runs in asgiref's long-lived sync thread
        return f"sessionid={browser.cookies['sessionid'].value}"

    cookie = await sync_to_async(sign_in)()
    assert (await call("/api/whoami", cookie))[2] == b'{"user": "inference-http"}'
    assert (await call("/api/whoami"))[2] == b'{"user": null}'
