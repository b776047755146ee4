"""Interactions: recorded by every generate/chat (live), readable by whom it concerns (API)."""

from __future__ import annotations

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
    admin = live.signin()
    rows = admin.get("/api/v1/interactions/").json()["results"]
    row = next(r for r in rows if r["messages"] and r["messages"][0]["content"] == marker)
    assert row["response"] == reply.json()["message"]["content"]
    assert row["kernel"] is not None and row["routed"][0]["distance"] is not None
    assert row["completion_tokens"] > 0 and row["total_duration_ns"] > 0
    assert row["user_agent"] == "interaction-test/1" and row["remote_addr"] == "127.0.0.1"
    assert row["phi"] is not None and row["regime"]
