"""The REST schema is true: schemathesis fuzzes every operation of `/api/v1/schema/` in-process.

Each operation runs as staff and as a developer (token authentication) through the real WSGI
application and the real test database, with data that fits the schema and data that does not,
against objects that exist (a job, a node, a conversation, …, with the nulls real rows have) and
ids that do not. Every answer must be documented (status code, content type, body, headers) and
none may be a server error; after each operation's batch `/api/v1/auth/me/` still answers.

Writes are real and the database is the test's own (rolled back after it): a queued job or
learning cycle is asked of a worker only once its transaction commits, which never happens here,
and no worker consumes this process's broker, so nothing trains. Examples are derandomized (the
same cases on every run) and bounded: see docs/testing.md for the time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import werkzeug.test
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import max_response_time, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from constellation.engine import e8
from constellation.models import Conversation, Interaction, Kernel
from federation.bundle_models import Bundle
from federation.flower.models import FlowerRound
from federation.models import Node
from learning.models import FineTuneJob, JobMetric, LearningCycle, LearningEvent, LearningSignal
from uploads.models import KnowledgeChunk, KnowledgeFile

# A batch that hangs fails here rather than holding CI; one takes a few seconds.
pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

SCHEMA_URL = "/api/v1/schema/"


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' `not_a_server_error`, but for a 503 that the operation documents: the chat
    answers 503 "no trained model yet" in the test database, which has none (a state the
    client is told, not a failure of the server)."""
    if response.status_code == 503 and "503" in case.operation.definition.raw["responses"]:
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    max_response_time,  # 10 s: an answer that slow is a hang
]
# Per operation and role: this many cases that fit the schema and as many that do not, with
# generated ids and with the real object's (about 15 requests a batch, 1,500 in all). The whole
# file stays within a few minutes on a 2-core machine (docs/testing.md).
EXAMPLES = 6
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows the case it hit
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)


@cache
def operations() -> list[str]:
    """Every operation of the schema, as schemathesis labels them (`GET /api/v1/jobs/{id}/`)."""
    raw = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))
    return labels(schemathesis.openapi.from_dict(raw))


def labels(schema: Any) -> list[str]:
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"an operation schemathesis cannot read: {result.err()}"
        found.append(result.ok().label)
    return sorted(found)


SERVED: dict[str, Any] = {}


def served_schema(token: str) -> Any:
    """`/api/v1/schema/` as the server answers it (loaded by the first test, with its staff
    token); the requests of its cases go to the WSGI application."""
    if "schema" not in SERVED:
        SERVED["schema"] = schemathesis.openapi.from_wsgi(
            SCHEMA_URL, get_wsgi_application(), headers={"Authorization": f"Token {token}"}
        )
    return SERVED["schema"]


def world() -> dict[str, Any]:
    """Users with tokens, and one real object of each kind with the nulls a real one has."""
    staff = User.objects.create_user("fuzz-staff", is_staff=True, is_superuser=True)
    dev = User.objects.create_user("fuzz-dev")  # email "" and no name, as `qig` makes users
    tokens = {
        role: Token.objects.create(user=user).key
        for role, user in [("staff", staff), ("developer", dev)]
    }
    Kernel.objects.create(index=7, role=str(e8.roles()[7]), anchor=e8.anchor(7).tolist())
    conversation = Conversation.objects.create(user=dev, title="")
    chat = Interaction.objects.create(
        endpoint="app-chat", model="qig-constellation:latest", user=dev, conversation=conversation,
        messages=[{"role": "user", "content": "hi"}], prompt="user: hi", response="hello",
    )  # fmt: skip
    Interaction.objects.create(endpoint="ollama-generate", model="qig-constellation:latest")
    upload = KnowledgeFile.objects.create(
        original_name="notes.txt", file="knowledge/notes.txt", sha256="0" * 64, size_bytes=5,
        uploaded_by=dev,
    )  # fmt: skip
    KnowledgeChunk.objects.create(
        upload=upload, index=0, text="hello", n_tokens=1, basin_bytes=b"\0" * 256
    )
    job = FineTuneJob.objects.create(kind="adapter", target_kernels=[7], created_by=dev)
    JobMetric.objects.create(
        job=job, step=1, kernel=7, loss=3.0, lr=1e-3, grad_norm=1.0, tokens_per_s=100.0
    )
    node = Node.objects.create(name="edge-1", created_by=staff)
    event = LearningEvent.objects.create(kind="job", message="queued", job=job)
    signal = LearningSignal.objects.create(
        kind="accepted", value=0.9, reason="thumbs up", interaction=chat, kernel_index=7, user=dev
    )
    cycle = LearningCycle.objects.create(  # finished: `learning/loop/run/` may queue another
        trigger="manual", requested_by=dev, status="skipped", reason="not run: busy"
    )
    bundle = Bundle.objects.create(version=1, status="published", source="admin", kernels=[7])
    flower_round = FlowerRound.objects.create(
        kernels=[7], min_edges=1, rounds=1, status="completed", created_by=staff
    )
    ids = {
        "conversations": conversation.pk, "interactions": chat.pk, "uploads": upload.pk,
        "jobs": job.pk, "nodes": node.pk, "learning-events": event.pk, "signals": signal.pk,
        "learning/cycles": cycle.pk, "kernels": 7, "federation/anchors": 7,
        "federation/bundles": bundle.version, "federation/rounds": flower_round.pk,
    }  # fmt: skip
    return {"tokens": tokens, "ids": ids}


def real_path_parameters(label: str, ids: dict[str, int]) -> dict[str, int] | None:
    """The path parameters that name the real object of the operation, if it has any."""
    path = label.split(" ", 1)[1].removeprefix("/api/v1/")
    if "{" not in path:
        return None
    collection, _, rest = path.partition("/{")
    name = rest.split("}", 1)[0]
    return {name: ids[collection]}


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MODELS_DIR = tmp_path / "models"
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    return tmp_path


@pytest.fixture
def in_test_transaction() -> Iterator[None]:
    """Requests through the WSGI handler keep the test's connection, as Django's test client's
    do: the handler's signals would otherwise close it (and the test's transaction with it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def still_answering(token: str) -> None:
    """A normal request, through the same WSGI application (Django's test client would connect
    the signals again that `in_test_transaction` disconnected)."""
    client = werkzeug.test.Client(get_wsgi_application())
    response = client.get("/api/v1/auth/me/", headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200, (response.status_code, response.get_data()[:300])


def strategies(operation: Any, path_parameters: dict[str, int] | None) -> Iterator[Any]:
    """Valid and invalid cases; with the real object's id too where the path names one (invalid
    ones only where a body or a query parameter can be invalid: the path is fixed)."""
    can_be_invalid = bool(len(operation.body) or len(operation.query))
    yield operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    if can_be_invalid or len(operation.path_parameters):
        yield operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    if path_parameters is not None:
        yield operation.as_strategy(path_parameters=path_parameters)
        if can_be_invalid:
            yield operation.as_strategy(
                generation_mode=GenerationMode.NEGATIVE, path_parameters=path_parameters
            )


@pytest.mark.parametrize("role", ["staff", "developer"])
@pytest.mark.parametrize("label", operations())
@pytest.mark.usefixtures("in_test_transaction")
def test_it_answers_as_the_schema_says(label: str, role: str, media: Path) -> None:
    objects = world()
    token = objects["tokens"][role]
    schema = served_schema(objects["tokens"]["staff"])
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is in the generated schema but not in the served one"
    headers = {"Authorization": f"Token {token}"}

    for strategy in strategies(operation, real_path_parameters(label, objects["ids"])):

        @FUZZ
        @given(case=strategy)
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
        still_answering(token)


def test_it_fuzzes_every_operation_served(admin_api: Any) -> None:
    """The operations this file parametrises over are those `/api/v1/schema/` serves."""
    response = admin_api.get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert labels(schemathesis.openapi.from_dict(response.json())) == operations()
    assert "POST /api/v1/chat/" in operations()
