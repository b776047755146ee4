"""The React app's chat: `/api/v1/conversations/` and the streamed `POST /api/v1/chat/`.

Conversations, validation, ownership and CSRF are checked in-process (they answer before any
model is needed); streaming, history, measures and cancellation against the live product with a
tiny trained model (`live`, shared with the other inference tests)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from django.test import Client
from rest_framework.test import APIClient

from constellation.engine import e8
from constellation.models import Conversation, Interaction
from tests.conftest import PASSWORD
from tests.inference.conftest import Serving

MESSAGE_FIELDS = {
    "id",
    "role",
    "content",
    "created_at",
    "model",
    "kernel",
    "kernel_role",
    "distance",
    "routed",
    "phi",
    "kappa",
    "regime",
    "ttft_ms",
    "tokens_per_s",
    "completion_tokens",
    "done_reason",
    "feedback",
    "suggested_answer",
}


@pytest.fixture
def no_model(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


# ---- conversations (in-process) --------------------------------------------------------------
@pytest.mark.django_db
def test_conversations_are_created_listed_renamed_and_deleted_by_their_owner(dev_api) -> None:
    made = dev_api.post("/api/v1/conversations/", {"title": "sockets"}, format="json")
    assert made.status_code == 201, made.content
    first = made.json()
    assert first["title"] == "sockets" and first["message_count"] == 0
    untitled = dev_api.post("/api/v1/conversations/", {}, format="json")
    assert untitled.status_code == 201 and untitled.json()["title"] == ""
    renamed = dev_api.patch(
        f"/api/v1/conversations/{first['id']}/", {"title": "TCP sockets"}, format="json"
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "TCP sockets"
    listed = dev_api.get("/api/v1/conversations/").json()
    assert set(listed) == {"count", "next", "previous", "results"}
    # The renamed one was updated last: newest activity first.
    assert [c["id"] for c in listed["results"]] == [first["id"], untitled.json()["id"]]
    assert set(listed["results"][0]) == {"id", "title", "created_at", "updated_at", "message_count"}
    detail = dev_api.get(f"/api/v1/conversations/{first['id']}/").json()
    assert detail["messages"] == [] and detail["title"] == "TCP sockets"
    assert dev_api.delete(f"/api/v1/conversations/{first['id']}/").status_code == 204
    assert not Conversation.objects.filter(pk=first["id"]).exists()
    too_long = dev_api.post("/api/v1/conversations/", {"title": "x" * 201}, format="json")
    assert too_long.status_code == 400 and "title" in too_long.json()


@pytest.mark.django_db
def test_only_the_owner_sees_or_changes_a_conversation(
    dev_api, developer, admin_api, anon_api, no_model
) -> None:
    mine = Conversation.objects.create(user=developer, title="mine")
    url = f"/api/v1/conversations/{mine.pk}/"
    assert admin_api.get(url).status_code == 404  # staff included: chats are private
    assert admin_api.patch(url, {"title": "x"}, format="json").status_code == 404
    assert admin_api.delete(url).status_code == 404
    assert admin_api.get("/api/v1/conversations/").json()["count"] == 0
    assert anon_api.get("/api/v1/conversations/").status_code == 401
    chat = admin_api.post(
        "/api/v1/chat/", {"conversation": mine.pk, "content": "hello"}, format="json"
    )
    assert chat.status_code == 404
    assert chat.json() == {"detail": f"conversation {mine.pk} not found"}
    mine.refresh_from_db()
    assert mine.title == "mine" and dev_api.get(url).status_code == 200


@pytest.mark.django_db
def test_chat_messages_come_from_the_stored_interactions(dev_api, developer) -> None:
    conversation = Conversation.objects.create(user=developer, title="t")
    item = Interaction.objects.create(
        endpoint="app-chat",
        model="qig-constellation:latest",
        messages=[{"role": "user", "content": "what is a basin?"}],
        response="a region of the simplex",
        kernel=13,
        routed=[{"kernel": 13, "role": "MEMORY", "distance": 0.25}],
        phi=0.4,
        kappa=50.0,
        regime="geometric",
        done_reason="stop",
        completion_tokens=10,
        load_duration_ns=0,
        prompt_eval_duration_ns=20_000_000,
        eval_duration_ns=500_000_000,
        total_duration_ns=520_000_000,
        user=developer,
        conversation=conversation,
    )
    detail = dev_api.get(f"/api/v1/conversations/{conversation.pk}/").json()
    user, answer = detail["messages"]
    assert user["role"] == "user" and user["content"] == "what is a basin?"
    assert set(answer) == MESSAGE_FIELDS
    assert answer["id"] == item.pk and answer["content"] == "a region of the simplex"
    assert answer["kernel"] == 13 and answer["kernel_role"] == "MEMORY"
    assert answer["distance"] == 0.25
    assert answer["ttft_ms"] == pytest.approx(20.0)
    assert answer["tokens_per_s"] == pytest.approx(20.0)
    assert dev_api.get("/api/v1/conversations/").json()["results"][0]["message_count"] == 2

    # Feedback on a chat message: the interactions endpoint, seen in the conversation.
    url = f"/api/v1/interactions/{item.pk}/feedback/"
    saved = dev_api.post(
        url, {"feedback": "down", "suggested_answer": "a basin of attraction"}, format="json"
    )
    assert saved.status_code == 200, saved.content
    answer = dev_api.get(f"/api/v1/conversations/{conversation.pk}/").json()["messages"][1]
    assert answer["feedback"] == "down" and answer["suggested_answer"] == "a basin of attraction"


# ---- POST /api/v1/chat/ before any streaming (in-process) ------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({}, "content: required"),
        ({"content": "   "}, "content: the message is empty"),
        ({"content": 3}, "content: required"),
        ({"content": "x" * 32_001}, "content: longer than 32000"),
        ({"content": "hi", "conversation": "1"}, "conversation: expected a conversation id"),
        ({"content": "hi", "conversation": True}, "conversation: expected a conversation id"),
        ({"content": "hi", "model": ""}, "model: expected a model name"),
        ({"content": "hi", "options": [1]}, "options: expected an object"),
        ({"content": "hi", "options": {"temperature": "hot"}}, "invalid options"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_chat_requests_get_400_with_what_is_wrong(
    dev_api, body: Any, said: str, no_model
) -> None:
    answer = dev_api.post("/api/v1/chat/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert said in answer.json()["detail"]
    assert Conversation.objects.count() == 0  # nothing was made


@pytest.mark.django_db
def test_malformed_json_unknown_model_and_wrong_method(dev_api, no_model) -> None:
    bad = dev_api.post("/api/v1/chat/", "{nope", content_type="application/json")
    assert bad.status_code == 400 and "invalid JSON" in bad.json()["detail"]
    form = dev_api.post("/api/v1/chat/", {"content": "hi"})  # multipart
    assert form.status_code == 400 and "Content-Type: application/json" in form.json()["detail"]
    unknown = dev_api.post("/api/v1/chat/", {"content": "hi", "model": "llama3:8b"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "model 'llama3:8b' not found"
    assert dev_api.get("/api/v1/chat/").status_code == 405


@pytest.mark.django_db
def test_before_any_training_chat_answers_503_with_the_bootstrap_progress(
    dev_api, no_model
) -> None:
    answer = dev_api.post("/api/v1/chat/", {"content": "hello"}, format="json")
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("no trained model yet: ")
    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_session_auth_needs_the_csrf_token_and_anonymous_gets_401(developer, no_model) -> None:
    browser = Client(enforce_csrf_checks=True)
    anonymous = browser.post("/api/v1/chat/", {"content": "hi"}, content_type="application/json")
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"] == "Authentication credentials were not provided."
    assert browser.login(username=developer.username, password=PASSWORD)
    refused = browser.post("/api/v1/chat/", {"content": "hi"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    token = browser.get("/api/v1/auth/csrf/").json()["csrfToken"]
    allowed = browser.post(
        "/api/v1/chat/",
        {"content": "hi"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert allowed.status_code == 503, (
        allowed.content
    )  # past authentication: only the model is missing


@pytest.mark.django_db
def test_token_auth_needs_no_csrf(developer, no_model) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=developer)
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.post("/api/v1/chat/", {"content": "hi"}, format="json").status_code == 503
    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert client.post("/api/v1/chat/", {"content": "hi"}, format="json").status_code == 401


# ---- streaming against the live product ------------------------------------------------------
def signed_in(live: Serving) -> httpx.Client:
    client = live.signin()
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.timeout = httpx.Timeout(60)
    return client


def chat_lines(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The NDJSON lines of one chat, each read as it arrives."""
    lines = []
    with client.stream("POST", "/api/v1/chat/", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/x-ndjson"
        for text in response.iter_lines():
            assert text, "no empty lines"
            lines.append(json.loads(text))
    return lines


@pytest.mark.live
@pytest.mark.timeout(180)
def test_an_answer_streams_token_lines_then_done_with_its_measures(live: Serving) -> None:
    client = signed_in(live)
    body = {"conversation": None, "content": "tell me about memory and sockets"}
    lines = chat_lines(client, {**body, "options": {"num_predict": 24}})
    head, *tokens, last = lines
    assert head["type"] == "conversation"
    conversation = head["conversation"]
    assert conversation["title"] == "tell me about memory and sockets"
    assert conversation["message_count"] == 0
    assert tokens and all(t["type"] == "token" and set(t) == {"type", "content"} for t in tokens)
    assert last["type"] == "done", last
    message = last["message"]
    assert set(message) == MESSAGE_FIELDS
    assert message["role"] == "assistant" and message["model"] == "qig-constellation:latest"
    assert message["content"] == "".join(t["content"] for t in tokens)
    assert message["done_reason"] in ("stop", "length")
    assert 0 < message["completion_tokens"] <= 24
    assert isinstance(message["kernel"], int) and 0 <= message["kernel"] < e8.N_ROOTS
    assert message["kernel_role"] == e8.role_of(message["kernel"]).value
    assert isinstance(message["distance"], float) and message["distance"] >= 0
    assert message["routed"][0]["kernel"] == message["kernel"]
    assert message["phi"] is not None and message["kappa"] is not None and message["regime"]
    assert message["ttft_ms"] > 0 and message["tokens_per_s"] > 0
    assert message["feedback"] == "" and message["suggested_answer"] == ""

    stored = client.get(f"/api/v1/conversations/{conversation['id']}/").json()
    assert stored["messages"][0] == {
        "role": "user",
        "content": body["content"],
        "created_at": stored["messages"][0]["created_at"],
    }
    assert stored["messages"][1] == message
    listed = client.get("/api/v1/conversations/").json()["results"]
    assert listed[0]["id"] == conversation["id"] and listed[0]["message_count"] == 2
    # The measures are the interaction's own.
    row = client.get(f"/api/v1/interactions/{message['id']}/").json()
    assert row["completion_tokens"] == message["completion_tokens"]
    assert message["tokens_per_s"] == pytest.approx(
        row["completion_tokens"] / (row["eval_duration_ns"] / 1e9)
    )

    thumbs = client.post(f"/api/v1/interactions/{message['id']}/feedback/", json={"feedback": "up"})
    assert thumbs.status_code == 200, thumbs.text
    again = client.get(f"/api/v1/conversations/{conversation['id']}/").json()
    assert again["messages"][1]["feedback"] == "up"


@pytest.mark.live
@pytest.mark.timeout(180)
def test_the_second_turn_is_prompted_with_the_first(live: Serving) -> None:
    client = signed_in(live)
    options = {"num_predict": 12}
    first = chat_lines(client, {"content": "the first question", "options": options})
    conversation = first[0]["conversation"]["id"]
    answer = first[-1]["message"]
    second = chat_lines(
        client, {"conversation": conversation, "content": "and a second", "options": options}
    )
    assert second[0]["conversation"]["id"] == conversation
    assert second[0]["conversation"]["message_count"] == 2
    row = client.get(f"/api/v1/interactions/{second[-1]['message']['id']}/").json()
    assert row["messages"] == [
        {"role": "user", "content": "the first question"},
        {"role": "assistant", "content": answer["content"]},
        {"role": "user", "content": "and a second"},
    ]
    assert row["prompt"].startswith("user: the first question\nassistant: ")
    assert row["prompt"].endswith("user: and a second\nassistant:")
    thread = client.get(f"/api/v1/conversations/{conversation}/").json()["messages"]
    assert [m["role"] for m in thread] == ["user", "assistant", "user", "assistant"]


@pytest.mark.live
@pytest.mark.timeout(180)
def test_a_client_that_stops_keeps_the_partial_answer_as_cancelled(live: Serving) -> None:
    client = signed_in(live)
    body = {"content": "go on and on", "options": {"num_predict": -1, "temperature": 0.9}}
    received = []
    began = time.monotonic()
    with client.stream("POST", "/api/v1/chat/", json=body) as response:
        assert response.status_code == 200
        for text in response.iter_lines():
            received.append(json.loads(text))
            if len(received) == 3:  # the conversation and two tokens: then the Stop button
                break
    conversation = received[0]["conversation"]["id"]
    assert [r["type"] for r in received] == ["conversation", "token", "token"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        thread = client.get(f"/api/v1/conversations/{conversation}/").json()["messages"]
        if thread:
            break
        time.sleep(0.2)
    user, answer = thread
    assert user["content"] == "go on and on"
    assert answer["done_reason"] == "cancelled"
    assert answer["content"].startswith(received[1]["content"] + received[2]["content"])
    assert answer["completion_tokens"] >= 2
    # Cancelled long before the 1024-token context would have filled.
    assert answer["completion_tokens"] < 1000
    assert time.monotonic() - began < 30
