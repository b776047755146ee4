"""Interactions: recorded by every generate/chat (live), readable by whom it concerns (API)."""

from __future__ import annotations

import time

import httpx
import pytest

from constellation.models import Interaction
from tests.inference.conftest import Serving


def make(user=None, **fields) -> Interaction:
    return Interaction.objects.create(endpoint="chat", model="m:latest", user=user, **fields)


@pytest.mark.django_db
def test_staff_see_all_developers_their_own_and_api_clients(
    admin_user, developer, dev_api, admin_api, django_user_model
) -> None:
    other = django_user_model.objects.create_user(username="other", password="x" * 12)
    mine, api_client, theirs = make(developer), make(None), make(other)
    seen = {row["id"] for row in dev_api.get("/api/v1/interactions/").json()["results"]}
    assert seen == {mine.pk, api_client.pk}
    assert dev_api.get(f"/api/v1/interactions/{theirs.pk}/").status_code == 404
    everything = {row["id"] for row in admin_api.get("/api/v1/interactions/").json()["results"]}
    assert everything == {mine.pk, api_client.pk, theirs.pk}


@pytest.mark.django_db
def test_staff_do_not_read_other_users_app_chat_anywhere(
    admin_user, developer, admin_api, client
) -> None:
    """A user's app-chat turns are theirs alone: not in the interactions API, not in the admin
    (their API-client generations stay visible to staff, who run the node)."""
    from constellation.models import Conversation

    conversation = Conversation.objects.create(user=developer, title="private")
    secret = make(developer, conversation=conversation, prompt="my password is hunter2")
    generated = make(developer, prompt="an /api/generate call")
    own_chat = make(
        admin_user, conversation=Conversation.objects.create(user=admin_user), prompt="admin's"
    )
    assert admin_api.get(f"/api/v1/interactions/{secret.pk}/").status_code == 404
    assert (
        admin_api.post(
            f"/api/v1/interactions/{secret.pk}/feedback/", {"feedback": "up"}, format="json"
        ).status_code
        == 404
    )
    listed = {row["id"] for row in admin_api.get("/api/v1/interactions/").json()["results"]}
    assert listed == {generated.pk, own_chat.pk}
    client.force_login(admin_user)
    admin_list = client.get("/admin/constellation/interaction/?q=hunter2")
    assert admin_list.status_code == 200 and b"0 interactions" in admin_list.content
    assert client.get(f"/admin/constellation/interaction/{secret.pk}/change/").status_code == 302
    assert (
        client.get(f"/admin/constellation/conversation/{conversation.pk}/change/").status_code
        == 302
    )
    assert b"hunter2" not in client.get("/admin/constellation/interaction/").content


@pytest.mark.django_db
def test_feedback_is_saved_on_the_interaction(dev_api, developer, anon_api) -> None:
    item = make(developer)
    url = f"/api/v1/interactions/{item.pk}/feedback/"
    assert anon_api.post(url, {"feedback": "up"}, format="json").status_code in (401, 403)
    bad = dev_api.post(url, {"feedback": "meh"}, format="json")
    assert bad.status_code == 400
    answer = dev_api.post(
        url, {"feedback": "down", "suggested_answer": "use socket.create_connection"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    item.refresh_from_db()
    assert item.feedback == "down" and item.suggested_answer.startswith("use socket")
    assert item.feedback_at is not None


def recorded(live: Serving, marker: str) -> dict:
    """The interaction whose prompt or first message holds `marker`: stored after the response
    has ended (interactions.record_after), so it may take a moment."""
    admin = live.signin()
    deadline = time.monotonic() + 10
    while True:
        rows = admin.get("/api/v1/interactions/", params={"page_size": 200}).json()["results"]
        for row in rows:
            if marker in row["prompt"] or (
                row["messages"] and marker in row["messages"][0]["content"]
            ):
                return row
        assert time.monotonic() < deadline, f"no interaction for {marker!r}"
        time.sleep(0.05)


@pytest.mark.live
@pytest.mark.timeout(120)
def test_each_chat_is_recorded_with_its_route_and_measures(live: Serving) -> None:
    marker = "tell me about sockets, interaction-test"
    reply = httpx.post(
        live.base + "/api/chat",
        json={
            "model": "qig-constellation:latest",
            "stream": False,
            "messages": [{"role": "user", "content": marker}],
            "options": {"num_predict": 16},
        },
        headers={"User-Agent": "interaction-test/1"},
        timeout=30,
    )
    assert reply.status_code == 200
    row = recorded(live, marker)
    assert row["endpoint"] == "chat"
    assert row["response"] == reply.json()["message"]["content"]
    assert row["kernel"] is not None and row["routed"][0]["distance"] is not None
    assert row["completion_tokens"] > 0 and row["total_duration_ns"] > 0
    assert row["user_agent"] == "interaction-test/1" and row["remote_addr"] == "127.0.0.1"
    assert row["phi"] is not None and row["regime"]


@pytest.mark.live
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("path", "endpoint", "stream"),
    [
        ("/api/generate", "generate", True),
        ("/api/generate", "generate", False),
        ("/api/chat", "chat", True),
        ("/v1/chat/completions", "openai.chat", True),
        ("/v1/chat/completions", "openai.chat", False),
        ("/v1/completions", "openai.completion", True),
        ("/v1/completions", "openai.completion", False),
    ],
)
def test_every_endpoint_records_its_answers(live: Serving, path, endpoint, stream) -> None:
    marker = f"record me {endpoint} {stream} {time.monotonic_ns()}"
    body: dict = {"model": "qig-constellation:latest", "stream": stream}
    options = {"num_predict": 8, "ignore_eos": True}
    if path == "/api/generate":
        body.update(prompt=marker, options=options)
    elif path == "/api/chat":
        body.update(messages=[{"role": "user", "content": marker}], options=options)
    elif path == "/v1/chat/completions":
        body.update(messages=[{"role": "user", "content": marker}], max_tokens=8)
    else:
        body.update(prompt=marker, max_tokens=8)
    with httpx.stream("POST", live.base + path, json=body, timeout=30) as response:
        assert response.status_code == 200
        response.read()
    row = recorded(live, marker)
    assert row["endpoint"] == endpoint and row["completion_tokens"] > 0
    assert row["phi"] is not None and row["regime"]  # Φ/κ are computed after the response
