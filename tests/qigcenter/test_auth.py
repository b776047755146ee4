from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _csrf_client() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    token = client.get("/api/v1/auth/csrf/").json()["csrfToken"]
    return client, token


def test_it_signs_in_with_a_session_and_out_again(developer) -> None:
    client, token = _csrf_client()
    response = client.post(
        "/api/v1/auth/login/",
        {"username": "dev", "password": PASSWORD},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200
    assert response.json() == {
        "id": developer.id,
        "username": "dev",
        "email": "",
        "is_staff": False,
    }
    assert client.get("/api/v1/auth/me/").json()["username"] == "dev"
    token = client.cookies["csrftoken"].value  # rotated at login
    assert client.post("/api/v1/auth/logout/", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert client.get("/api/v1/auth/me/").status_code == 401


def test_it_refuses_a_wrong_password_with_a_clear_message(developer) -> None:
    client, token = _csrf_client()
    response = client.post(
        "/api/v1/auth/login/",
        {"username": "dev", "password": "nope"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid username or password."}
    assert client.get("/api/v1/auth/me/").status_code == 401


def test_it_refuses_a_login_without_csrf_token(developer) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/v1/auth/login/",
        {"username": "dev", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 403


def test_it_issues_an_api_token_that_authenticates(developer) -> None:
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": "dev", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    key = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/auth/me/").json()["username"] == "dev"
    # The same token comes back next time.
    again = APIClient().post(
        "/api/v1/auth/token/", {"username": "dev", "password": PASSWORD}, format="json"
    )
    assert again.json()["token"] == key


@pytest.mark.parametrize(
    "path",
    ["/api/v1/jobs/", "/api/v1/kernels/", "/api/v1/nodes/", "/api/v1/uploads/", "/api/v1/auth/me/"],
)
def test_it_turns_anonymous_api_reads_away(anon_api: APIClient, path: str) -> None:
    response = anon_api.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("path", "body"), [("/api/v1/jobs/", {"kind": "pretrain"}), ("/api/v1/nodes/", {})]
)
def test_it_turns_anonymous_writes_away(anon_api: APIClient, path: str, body: dict) -> None:
    assert anon_api.post(path, body, format="json").status_code == 401


def test_it_serves_health_to_anyone(client: Client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["mode"] in ("embedded", "services")


def test_it_serves_the_openapi_schema(admin_api: APIClient) -> None:
    response = admin_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/jobs/" in paths and "/api/v1/jobs/{id}/cancel/" in paths


def test_it_gives_admins_the_django_admin_for_every_model(client: Client, admin_user) -> None:
    client.force_login(admin_user)
    for url in [
        "/admin/constellation/kernel/",
        "/admin/federation/node/",
        "/admin/uploads/knowledgefile/",
        "/admin/learning/finetunejob/",
        "/admin/learning/learningevent/",
    ]:
        assert client.get(url).status_code == 200, url


def test_it_sends_anonymous_visitors_of_admin_to_its_login(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
