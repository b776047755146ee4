from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from dashboard.services import publish
from qigcenter.asgi import application
from tests.dashboard.ws import next_of, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]


async def _connect(cookie: bytes | None) -> tuple[WebsocketCommunicator, bool, int | None]:
    headers = [(b"origin", b"http://127.0.0.1:9200"), (b"host", b"127.0.0.1:9200")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, "/ws/telemetry/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def test_it_closes_anonymous_connections_with_4401() -> None:
    communicator, connected, _ = await _connect(None)
    assert connected  # accepted only to be closed with a code the browser can read
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_it_greets_and_beats_every_second(developer) -> None:
    communicator, connected, _ = await _connect(await sync_to_async(session_cookie)(developer))
    assert connected
    hello = await next_of(communicator, "hello")
    assert hello == {"type": "hello", "user": "dev", "topics": ["system"]}
    first = await next_of(communicator, "heartbeat")
    second = await next_of(communicator, "heartbeat", timeout=3)
    t1, t2 = (datetime.fromisoformat(m["server_time"]) for m in (first, second))
    assert 0.5 < (t2 - t1).total_seconds() < 2.0
    assert second["clients"] >= 1
    await communicator.disconnect()


async def test_it_counts_connected_clients(developer) -> None:
    cookie = await sync_to_async(session_cookie)(developer)
    first, _, _ = await _connect(cookie)
    before = (await next_of(first, "heartbeat"))["clients"]
    second, _, _ = await _connect(cookie)
    assert (await next_of(second, "heartbeat"))["clients"] == before + 1
    await second.disconnect()
    await first.disconnect()


async def test_it_delivers_published_events_to_subscribers_only(developer) -> None:
    communicator, _, _ = await _connect(await sync_to_async(session_cookie)(developer))
    await next_of(communicator, "hello")
    await communicator.send_json_to({"type": "subscribe", "topics": ["jobs"]})
    assert (await next_of(communicator, "subscribed"))["topics"] == ["jobs", "system"]

    assert (await next_of(communicator, "event"))["payload"]["kind"] == "jobs.history"

    await sync_to_async(publish)("jobs", {"id": 7, "progress": 0.5})
    event = await next_of(communicator, "event")
    stamped = datetime.fromisoformat(event["payload"].pop("time"))  # when it was published
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 5
    assert event == {"type": "event", "topic": "jobs", "payload": {"id": 7, "progress": 0.5}}

    await communicator.send_json_to({"type": "unsubscribe", "topics": ["jobs"]})
    assert (await next_of(communicator, "subscribed"))["topics"] == ["system"]
    await sync_to_async(publish)("jobs", {"id": 8})
    await sync_to_async(publish)("system", {"kind": "marker"})
    # The system event arrives and the unsubscribed jobs event never does.
    assert (await next_of(communicator, "event"))["payload"]["kind"] == "marker"
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        ({"type": "subscribe", "topics": ["nope"]}, "unknown topic(s): nope"),
        ({"type": "subscribe", "topics": "jobs"}, "topics must be a list"),
        ({"type": "shout"}, "expected {type: subscribe|unsubscribe"),
    ],
)
async def test_it_answers_bad_messages_with_an_error(developer, message, detail) -> None:
    communicator, _, _ = await _connect(await sync_to_async(session_cookie)(developer))
    await communicator.send_json_to(message)
    assert detail in (await next_of(communicator, "error"))["detail"]
    await communicator.disconnect()


def test_it_refuses_to_publish_to_an_unknown_topic() -> None:
    with pytest.raises(ValueError, match="unknown telemetry topic 'weather'"):
        publish("weather", {})


@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        (b"http://127.0.0.1:9200", b"127.0.0.1:9200", True),
        (b"http://127.0.0.1:9999", b"127.0.0.1:9200", False),  # right host, another port
        (b"https://127.0.0.1:9200", b"127.0.0.1:9200", True),  # behind a TLS proxy
        (b"https://127.0.0.1", b"127.0.0.1", True),  # a Host without a port: the default
        (b"http://evil.example", b"127.0.0.1:9200", False),
        (b"null", b"127.0.0.1:9200", False),
    ],
)
async def test_a_browser_socket_comes_from_this_nodes_own_site(
    developer, origin: bytes, host: bytes, accepted: bool
) -> None:
    headers = [(b"origin", origin), (b"host", host)]
    headers.append((b"cookie", await sync_to_async(session_cookie)(developer)))
    communicator = WebsocketCommunicator(application, "/ws/telemetry/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is accepted
    if connected:
        assert (await next_of(communicator, "hello"))["user"] == "dev"
        await communicator.disconnect()


async def test_a_frame_that_is_not_json_is_answered_not_fatal(developer) -> None:
    communicator, _, _ = await _connect(await sync_to_async(session_cookie)(developer))
    await next_of(communicator, "hello")
    await communicator.send_to(text_data="[" * 10_000 + "]" * 10_000)
    error = await next_of(communicator, "error")
    assert error["detail"] == "invalid JSON: nested more than 64 levels deep"
    await communicator.send_json_to({"type": "subscribe", "topics": ["jobs"]})
    assert (await next_of(communicator, "subscribed"))["topics"] == ["jobs", "system"]
    await communicator.disconnect()
