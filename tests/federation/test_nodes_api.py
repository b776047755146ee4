from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from federation import central
from federation.models import Node

pytestmark = pytest.mark.django_db

NODE = {"name": "edge-1", "size": "minimal", "endpoint": "https://edge-1.example:9200"}


def test_it_lets_admins_add_a_node_with_a_join_token_shown_once(admin_api: APIClient) -> None:
    created = admin_api.post("/api/v1/nodes/", NODE, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "pending" and body["last_seen"] is None  # only a real sync sets it
    assert body["join_token"].startswith("qigjoin_")
    assert body["join_command"].startswith("qig federation join http")
    node = Node.objects.get(pk=body["id"])
    assert node.created_by is not None
    # Stored hashed: the token is not in the row, and it is never shown again.
    assert node.join_token_hash == central.token_hash(body["join_token"])
    assert body["join_token"] not in str(Node.objects.filter(pk=node.pk).values().first())
    assert "join_token" not in admin_api.get(f"/api/v1/nodes/{node.pk}/").json()
    # A new token replaces the old one.
    again = admin_api.post(f"/api/v1/nodes/{node.pk}/token/")
    assert again.status_code == 200
    node.refresh_from_db()
    assert node.join_token_hash == central.token_hash(again.json()["join_token"])
    revoked = admin_api.post(f"/api/v1/nodes/{node.pk}/revoke/")
    assert revoked.json()["status"] == "revoked"
    assert admin_api.post(f"/api/v1/nodes/{node.pk}/token/").status_code == 409
    assert admin_api.delete(f"/api/v1/nodes/{node.pk}/").status_code == 204
    assert not Node.objects.exists()


def test_it_lets_developers_see_but_not_change_nodes(
    admin_api: APIClient, dev_api: APIClient
) -> None:
    node_id = admin_api.post("/api/v1/nodes/", NODE, format="json").json()["id"]
    assert dev_api.get("/api/v1/nodes/").json()["count"] == 1
    assert (
        dev_api.post("/api/v1/nodes/", {**NODE, "name": "edge-2"}, format="json").status_code == 403
    )
    assert dev_api.post(f"/api/v1/nodes/{node_id}/revoke/").status_code == 403
    assert dev_api.delete(f"/api/v1/nodes/{node_id}/").status_code == 403
    assert Node.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"), [("endpoint", "not a url"), ("size", "huge"), ("name", "has spaces")]
)
def test_it_refuses_bad_nodes_naming_the_field(
    admin_api: APIClient, field: str, value: str
) -> None:
    response = admin_api.post("/api/v1/nodes/", {**NODE, field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_a_join_token_works_once_and_not_after_it_expires(
    admin_api: APIClient, settings: Any
) -> None:
    settings.FEDERATION = "central"
    from federation import packets

    token = admin_api.post("/api/v1/nodes/", NODE, format="json").json()["join_token"]
    key = packets.public_text(packets.new_key())
    anonymous = APIClient()
    wrong_size = anonymous.post(
        "/api/v1/federation/join/",
        {"token": token, "public_key": key, "size": "full"},
        format="json",
    )
    assert wrong_size.status_code == 403 and "QIG_FEDERATION_SIZE=minimal" in str(wrong_size.json())
    joined = anonymous.post(
        "/api/v1/federation/join/",
        {"token": token, "public_key": key, "size": "minimal"},
        format="json",
    )
    assert joined.status_code == 200, joined.content
    assert joined.json()["name"] == "edge-1" and len(joined.json()["kernels"]) == 3
    reused = anonymous.post(
        "/api/v1/federation/join/",
        {"token": token, "public_key": key, "size": "minimal"},
        format="json",
    )
    assert reused.status_code == 403 and "not valid" in reused.json()["detail"]
    node = admin_api.post("/api/v1/nodes/", {**NODE, "name": "edge-2"}, format="json").json()
    Node.objects.filter(pk=node["id"]).update(join_expires_at="2000-01-01T00:00:00Z")
    expired = anonymous.post(
        "/api/v1/federation/join/",
        {"token": node["join_token"], "public_key": key, "size": "minimal"},
        format="json",
    )
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]


def test_packets_per_minute_count_only_the_last_minute(admin_api: APIClient) -> None:
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from federation.models import ReceivedPacket, Rejection

    node_id = admin_api.post("/api/v1/nodes/", NODE, format="json").json()["id"]
    now = timezone.now()
    for age_s in (5, 30, 90, 600):
        row = ReceivedPacket.objects.create(
            packet_id=uuid.uuid4(), node_id=node_id, sent_at=now, size=100, body={}
        )
        ReceivedPacket.objects.filter(pk=row.pk).update(received_at=now - timedelta(seconds=age_s))
    Rejection.objects.create(node_id=node_id, reason="stale")
    row = admin_api.get(f"/api/v1/nodes/{node_id}/").json()
    assert row["per_minute"] == {"in": 2, "out": 0, "rejected": 1}
    [listed] = admin_api.get("/api/v1/nodes/").json()["results"]
    assert listed["per_minute"] == row["per_minute"]
