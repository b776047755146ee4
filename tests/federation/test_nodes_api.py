from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from federation.models import Node

pytestmark = pytest.mark.django_db

NODE = {
    "name": "edge-1",
    "mode": "edge",
    "size": "minimal",
    "endpoint": "https://edge-1.example:9200",
}


def test_it_lets_admins_manage_nodes(admin_api: APIClient) -> None:
    created = admin_api.post("/api/v1/nodes/", NODE, format="json")
    assert created.status_code == 201, created.content
    node_id = created.json()["id"]
    assert created.json()["last_seen_at"] is None  # only a real sync sets it
    assert Node.objects.get(pk=node_id).created_by is not None
    patched = admin_api.patch(f"/api/v1/nodes/{node_id}/", {"enabled": False}, format="json")
    assert patched.json()["enabled"] is False
    assert admin_api.delete(f"/api/v1/nodes/{node_id}/").status_code == 204


def test_it_lets_developers_see_but_not_change_nodes(
    admin_api: APIClient, dev_api: APIClient
) -> None:
    node_id = admin_api.post("/api/v1/nodes/", NODE, format="json").json()["id"]
    assert dev_api.get("/api/v1/nodes/").json()["count"] == 1
    assert (
        dev_api.post("/api/v1/nodes/", {**NODE, "name": "edge-2"}, format="json").status_code == 403
    )
    assert dev_api.delete(f"/api/v1/nodes/{node_id}/").status_code == 403
    assert Node.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"), [("endpoint", "not a url"), ("mode", "satellite"), ("name", "has spaces")]
)
def test_it_refuses_bad_nodes_naming_the_field(
    admin_api: APIClient, field: str, value: str
) -> None:
    response = admin_api.post("/api/v1/nodes/", {**NODE, field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()
