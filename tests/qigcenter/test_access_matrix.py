"""Who may call what: every route of the URLconf × method × principal, and the status it gets.

`ACCESS` is the one table. The tests walk the resolved URLconf and fail on a route with no row;
they make real objects owned by the developer so each path names something real, and send every
row's request as each principal. docs/access.md is this table as markdown: a test fails when it
differs (the command to regenerate it is `REGENERATE`).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.http import HttpResponseBase
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token, TokenProxy

from constellation.engine import e8
from constellation.models import Conversation, Interaction, Kernel, ModelConfig
from federation.flower.models import FlowerRound
from federation.models import Node
from learning.models import FineTuneJob, JobMetric, LearningCycle, LearningEvent, LearningSignal
from uploads.models import KnowledgeChunk, KnowledgeFile

DOC = Path(__file__).resolve().parents[2] / "docs" / "access.md"
REGENERATE = (
    "QIG_WRITE_ACCESS_DOC=1 .venv/bin/python -m pytest "
    "tests/qigcenter/test_access_matrix.py::test_the_doc_is_the_table"
)

# anonymous: no credentials. developer: not staff, owns every object the paths name. staff: a staff
# superuser (the `admin` that `make up` creates), owns nothing. other developer: not staff, owns
# nothing.
ANONYMOUS, DEVELOPER, STAFF, OTHER = "anonymous", "developer", "staff", "other developer"
PRINCIPALS = (ANONYMOUS, DEVELOPER, STAFF, OTHER)

MODEL = "qig-constellation:latest"
UPLOAD = "<a small text file>"  # a body: multipart, one knowledge file
PRIVATE = "my secret"  # in the developer's chat: no answer to staff or another user shows it
EDGE_KEY = base64.b64encode(bytes(range(32))).decode()  # an Ed25519 public key's size

Expect = int | frozenset[int]
Body = None | str | dict[str, Any] | Callable[["World"], dict[str, Any]]
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def any_of(*codes: int) -> Expect:
    return frozenset(codes)


SPA = any_of(200, 503)  # the React app's index.html; 503 while frontend/dist is not built
READY = any_of(200, 503)  # /readyz: 503 while a component (the worker) does not answer
LOOP_RUN = any_of(200, 202)  # a cycle skipped at once (200, saying why) or queued (202)


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    expect: tuple[Expect, Expect, Expect, Expect]  # in the order of PRINCIPALS
    body: Body = None

    def expected(self, principal: str) -> Expect:
        return self.expect[PRINCIPALS.index(principal)]


def row(method: str, route: str, *expect: Expect, body: Body = None) -> Row:
    assert len(expect) == len(PRINCIPALS), f"{method} {route}: one status per principal"
    return Row(method, route, (expect[0], expect[1], expect[2], expect[3]), body)


def everyone(method: str, route: str, status: Expect, body: Body = None) -> Row:
    return Row(method, route, (status, status, status, status), body)


def signed_in(method: str, route: str, status: Expect, body: Body = None) -> Row:
    """Any signed-in user: anonymous gets 401."""
    return Row(method, route, (401, status, status, status), body)


def staff_only(method: str, route: str, status: Expect, body: Body = None) -> Row:
    """Only staff may change it: anonymous gets 401, developers 403."""
    return Row(method, route, (401, 403, status, 403), body)


def admin(method: str, route: str, staff: Expect) -> Row:
    """A Django admin page: anonymous and non-staff users are sent to its login page (302)."""
    return Row(method, route, (302, 302, staff, 302))


ADMIN_PAGES = {  # a model's admin pages: the path after /admin/<app>/<model>/, the methods
    "list": ("", ("GET", "POST")),
    "add": ("add/", ("GET", "POST")),
    "history": ("{object_id}/history/", ("GET",)),
    "delete": ("{object_id}/delete/", ("GET", "POST")),
    "change": ("{object_id}/change/", ("GET", "POST")),
    "object": ("{object_id}/", ("GET",)),  # redirects to change/
}


def admin_model(model: str, private: bool = False, **staff: Expect) -> list[Row]:
    """A model's admin pages. Staff get 200 (302 from the object page, which redirects), except
    where `staff` says otherwise (`POST_add=302`: the page and method); `private`: the object is
    another user's, and its pages send staff back to the index (302, "doesn't exist")."""
    rows = []
    for page, (suffix, methods) in ADMIN_PAGES.items():
        for method in methods:
            status = 302 if page == "object" or (private and "{" in suffix) else 200
            rows.append(
                admin(method, f"/admin/{model}/{suffix}", staff.pop(f"{method}_{page}", status))
            )
    assert not staff, f"{model}: no such admin page and method: {sorted(staff)}"
    return rows


# fmt: off
ACCESS: tuple[Row, ...] = (
    # ---- probes and the web app: no sign-in ---------------------------------------------------
    everyone("GET",  "/healthz", 200),
    everyone("POST", "/healthz", 405),
    everyone("GET",  "/readyz", READY),
    everyone("POST", "/readyz", 405),
    everyone("GET",  "/", SPA),
    everyone("POST", "/", 405),
    everyone("GET",  "/{path}", SPA),
    everyone("POST", "/{path}", 405),
    # ---- sign-in (bodies without a password: 400 whoever asks) -------------------------------
    everyone("GET",  "/api/v1/auth/csrf/", 200),
    everyone("POST", "/api/v1/auth/csrf/", 405),
    everyone("POST", "/api/v1/auth/login/", 400, {"username": "dev"}),
    everyone("GET",  "/api/v1/auth/login/", 405),
    everyone("POST", "/api/v1/auth/logout/", 204),
    everyone("GET",  "/api/v1/auth/logout/", 405),
    everyone("POST", "/api/v1/auth/token/", 400, {"username": "dev"}),
    everyone("GET",  "/api/v1/auth/token/", 405),
    signed_in("GET",  "/api/v1/auth/me/", 200),
    signed_in("POST", "/api/v1/auth/me/", 405),
    # ---- REST API -----------------------------------------------------------------------------
    signed_in("GET",  "/api/v1/", 200),
    signed_in("POST", "/api/v1/", 405),
    signed_in("GET",  "/api/v1/schema/", 200),
    signed_in("POST", "/api/v1/schema/", 405),
    signed_in("GET",  "/api/v1/schema/swagger/", 200),
    signed_in("POST", "/api/v1/schema/swagger/", 405),
    # a turn in the developer's conversation; no trained model here: 503 before any inference
    row("POST", "/api/v1/chat/", 401, 503, 404, 404,
        body=lambda w: {"conversation": w.objects["conversations"].pk, "content": "and then?"}),
    everyone("GET", "/api/v1/chat/", 405),
    signed_in("GET",    "/api/v1/conversations/", 200),
    signed_in("POST",   "/api/v1/conversations/", 201, {"title": "a new chat"}),
    signed_in("DELETE", "/api/v1/conversations/", 405),
    row("GET",    "/api/v1/conversations/{pk}/", 401, 200, 404, 404),
    row("PATCH",  "/api/v1/conversations/{pk}/", 401, 200, 404, 404, body={"title": "renamed"}),
    row("DELETE", "/api/v1/conversations/{pk}/", 401, 204, 404, 404),
    signed_in("PUT", "/api/v1/conversations/{pk}/", 405, {"title": "renamed"}),
    signed_in("GET",  "/api/v1/interactions/", 200),  # staff: all but others' chats; others: own
    signed_in("POST", "/api/v1/interactions/", 405),
    row("GET", "/api/v1/interactions/{pk}/", 401, 200, 404, 404),
    signed_in("DELETE", "/api/v1/interactions/{pk}/", 405),
    row("POST", "/api/v1/interactions/{pk}/feedback/", 401, 200, 404, 404, body={"feedback": "up"}),
    signed_in("GET", "/api/v1/interactions/{pk}/feedback/", 405),
    signed_in("GET",  "/api/v1/kernels/", 200),
    signed_in("POST", "/api/v1/kernels/", 405),
    signed_in("GET",  "/api/v1/kernels/{index}/", 200),
    signed_in("PUT",  "/api/v1/kernels/{index}/", 405),
    signed_in("GET",  "/api/v1/kernels/{index}/versions/", 200),
    signed_in("POST", "/api/v1/kernels/{index}/versions/", 405),
    staff_only("POST", "/api/v1/kernels/{index}/rollback/", 409),  # no earlier version here
    signed_in("GET",   "/api/v1/kernels/{index}/rollback/", 405),
    signed_in("GET",  "/api/v1/federation/", 200),
    signed_in("POST", "/api/v1/federation/", 405),
    # a join's token is its credential: a wrong one is refused whoever sends it
    everyone("POST", "/api/v1/federation/join/", 403,
             {"token": "qigjoin_wrong", "public_key": EDGE_KEY, "size": "minimal"}),
    everyone("GET", "/api/v1/federation/join/", 405),
    signed_in("GET",  "/api/v1/federation/anchors/{kernel}/", 200),
    signed_in("POST", "/api/v1/federation/anchors/{kernel}/", 405),
    # update bundles (this node runs alone: a publication or a rollback is a 409 for staff)
    signed_in("GET",     "/api/v1/federation/bundles/", 200),
    staff_only("POST",   "/api/v1/federation/bundles/", 409, {"train": False}),
    staff_only("DELETE", "/api/v1/federation/bundles/", 405),
    # a bundle's files: an admin, or a joined edge's signed request (the signature is its
    # credential); staff get 404 here (no bundle), everyone else 403 (not signed)
    row("GET", "/api/v1/federation/bundles/{version}/manifest/", 403, 403, 404, 403),
    everyone("POST", "/api/v1/federation/bundles/{version}/manifest/", 405),
    row("GET", "/api/v1/federation/bundles/{version}/files/{name}", 403, 403, 404, 403),
    everyone("POST", "/api/v1/federation/bundles/{version}/files/{name}", 405),
    staff_only("POST",   "/api/v1/federation/bundle/rollback/", 409),
    signed_in("GET",     "/api/v1/federation/bundle/rollback/", 405),
    # Flower rounds (no SuperLink here: a start is a 409 for staff) and SuperNode keys (the
    # edge's signature is the credential; a node without Flower answers 404 to anyone)
    signed_in("GET",     "/api/v1/federation/rounds/", 200),
    staff_only("POST",   "/api/v1/federation/rounds/", 409,
               {"kernels": [7], "min_edges": 1, "rounds": 1}),
    signed_in("GET",     "/api/v1/federation/rounds/{pk}/", 200),
    staff_only("DELETE", "/api/v1/federation/rounds/{pk}/", 405),
    everyone("POST", "/api/v1/federation/flower/keys/", 404, {}),
    everyone("GET",  "/api/v1/federation/flower/keys/", 405),
    signed_in("GET",     "/api/v1/nodes/", 200),
    staff_only("POST",   "/api/v1/nodes/", 201, {"name": "edge-2"}),
    staff_only("DELETE", "/api/v1/nodes/", 405),
    signed_in("GET",     "/api/v1/nodes/{pk}/", 200),
    staff_only("DELETE", "/api/v1/nodes/{pk}/", 204),
    staff_only("PUT",    "/api/v1/nodes/{pk}/", 405, {"name": "edge-3"}),
    signed_in("GET",     "/api/v1/nodes/{pk}/packets/", 200),
    staff_only("POST",   "/api/v1/nodes/{pk}/packets/", 405),
    staff_only("POST",   "/api/v1/nodes/{pk}/revoke/", 200),
    signed_in("GET",     "/api/v1/nodes/{pk}/revoke/", 405),
    staff_only("POST",   "/api/v1/nodes/{pk}/token/", 200),
    signed_in("GET",     "/api/v1/nodes/{pk}/token/", 405),
    signed_in("GET",    "/api/v1/uploads/", 200),
    signed_in("POST",   "/api/v1/uploads/", 201, UPLOAD),
    signed_in("DELETE", "/api/v1/uploads/", 405),
    signed_in("GET",    "/api/v1/uploads/{pk}/", 200),
    row("DELETE", "/api/v1/uploads/{pk}/", 401, 204, 204, 403),  # the uploader or staff
    signed_in("PUT",    "/api/v1/uploads/{pk}/", 405),
    signed_in("GET",    "/api/v1/uploads/{pk}/chunks/", 200),
    signed_in("POST",   "/api/v1/uploads/{pk}/chunks/", 405),
    signed_in("GET",     "/api/v1/jobs/", 200),
    staff_only("POST",   "/api/v1/jobs/", 201, {"kind": "adapter", "target_kernels": [7]}),
    staff_only("DELETE", "/api/v1/jobs/", 405),
    signed_in("GET",     "/api/v1/jobs/{pk}/", 200),
    staff_only("DELETE", "/api/v1/jobs/{pk}/", 405),
    signed_in("GET",     "/api/v1/jobs/{pk}/history/", 200),
    staff_only("POST",   "/api/v1/jobs/{pk}/history/", 405),
    staff_only("POST",   "/api/v1/jobs/{pk}/cancel/", 200),
    signed_in("GET",     "/api/v1/jobs/{pk}/cancel/", 405),
    staff_only("POST",   "/api/v1/jobs/{pk}/pause/", 200),
    signed_in("GET",     "/api/v1/jobs/{pk}/pause/", 405),
    staff_only("POST",   "/api/v1/jobs/{pk}/resume/", 409),  # queued, not paused
    signed_in("GET",     "/api/v1/jobs/{pk}/resume/", 405),
    staff_only("POST",   "/api/v1/jobs/{pk}/reprioritise/", 200, {"priority": 5}),
    signed_in("GET",     "/api/v1/jobs/{pk}/reprioritise/", 405),
    signed_in("GET",    "/api/v1/learning-events/", 200),
    signed_in("POST",   "/api/v1/learning-events/", 405),
    signed_in("GET",    "/api/v1/learning-events/{pk}/", 200),
    signed_in("DELETE", "/api/v1/learning-events/{pk}/", 405),
    signed_in("GET",    "/api/v1/signals/", 200),  # staff: all; others: their own
    signed_in("POST",   "/api/v1/signals/", 405),
    # a signal of the developer's app-chat turn: their chat, hidden from staff too
    row("GET", "/api/v1/signals/{pk}/", 401, 200, 404, 404),
    signed_in("DELETE", "/api/v1/signals/{pk}/", 405),
    signed_in("GET",     "/api/v1/learning/loop/", 200),
    staff_only("PATCH",  "/api/v1/learning/loop/", 200, {"enabled": False}),
    staff_only("DELETE", "/api/v1/learning/loop/", 405),
    staff_only("POST",   "/api/v1/learning/loop/run/", LOOP_RUN),
    signed_in("GET",     "/api/v1/learning/loop/run/", 405),
    signed_in("GET",    "/api/v1/learning/cycles/", 200),
    signed_in("POST",   "/api/v1/learning/cycles/", 405),
    signed_in("GET",    "/api/v1/learning/cycles/{pk}/", 200),
    signed_in("DELETE", "/api/v1/learning/cycles/{pk}/", 405),
    # ---- Ollama/OpenAI API: open on loopback (beyond it, 401 without the key: tested apart) ----
    # No bodies: the answer is the request's own error (400), never an inference.
    everyone("GET",    "/api/version", 200),
    everyone("POST",   "/api/version", 405),
    everyone("GET",    "/api/tags", 200),
    everyone("POST",   "/api/tags", 405),
    everyone("GET",    "/api/ps", 200),
    everyone("POST",   "/api/ps", 405),
    everyone("POST",   "/api/show", 400),
    everyone("GET",    "/api/show", 405),
    everyone("POST",   "/api/generate", 400),
    everyone("GET",    "/api/generate", 405),
    everyone("POST",   "/api/chat", 400),
    everyone("GET",    "/api/chat", 405),
    everyone("POST",   "/api/embed", 400),
    everyone("GET",    "/api/embed", 405),
    everyone("POST",   "/api/embeddings", 400),
    everyone("GET",    "/api/embeddings", 405),
    everyone("POST",   "/api/create", 400),
    everyone("GET",    "/api/create", 405),
    everyone("HEAD",   "/api/blobs/{digest}", 404),  # no such blob here
    everyone("POST",   "/api/blobs/{digest}", 400),  # an empty body is not that blob
    everyone("GET",    "/api/blobs/{digest}", 405),
    everyone("POST",   "/api/copy", 400),
    everyone("GET",    "/api/copy", 405),
    everyone("DELETE", "/api/delete", 400),
    everyone("POST",   "/api/delete", 405),
    everyone("POST",   "/api/pull", 400),
    everyone("GET",    "/api/pull", 405),
    everyone("POST",   "/api/push", 400),
    everyone("GET",    "/api/push", 405),
    everyone("POST",   "/v1/chat/completions", 400),
    everyone("GET",    "/v1/chat/completions", 405),
    everyone("POST",   "/v1/completions", 400),
    everyone("GET",    "/v1/completions", 405),
    everyone("GET",    "/v1/models", 200),
    everyone("POST",   "/v1/models", 405),
    everyone("GET",    "/v1/models/{model_id}", 404),  # no trained model here
    everyone("POST",   "/v1/models/{model_id}", 405),
    everyone("POST",   "/v1/embeddings", 400),
    everyone("GET",    "/v1/embeddings", 405),
    # ---- Django admin: staff only -------------------------------------------------------------
    admin("GET", "/admin/", 200),
    row("GET", "/admin/login/", 200, 200, 302, 200),  # staff: signed in already
    everyone("POST", "/admin/login/", 200),  # no credentials: the form again
    row("GET", "/admin/logout/", 302, 302, 405, 302),  # staff must POST
    admin("POST", "/admin/logout/", 200),
    admin("GET",  "/admin/password_change/", 200),
    admin("POST", "/admin/password_change/", 200),  # no passwords: the form again
    admin("GET",  "/admin/password_change/done/", 200),
    admin("GET",  "/admin/autocomplete/", 403),  # no field to complete
    admin("GET",  "/admin/jsi18n/", 200),
    admin("GET",  "/admin/r/{content_type_id}/{object_id}/", 404),  # a chat has no public URL
    admin("GET",  "/admin/{app_label}/", 200),
    admin("GET",  "/admin/{url}", 404),
    admin("GET",  "/admin/auth/user/{id}/password/", 200),
    admin("POST", "/admin/auth/user/{id}/password/", 200),
    *admin_model("auth/group"),
    *admin_model("auth/user"),
    *admin_model("authtoken/tokenproxy"),
    *admin_model("constellation/kernel"),
    *admin_model("constellation/modelconfig"),
    *admin_model("constellation/interaction", private=True, GET_add=403, POST_add=403),
    *admin_model("constellation/conversation", private=True),
    *admin_model("federation/node"),
    *admin_model("learning/finetunejob"),
    *admin_model("learning/jobmetric"),
    *admin_model("learning/learningevent"),
    *admin_model("learning/learningsignal", private=True, GET_add=403, POST_add=403),
    *admin_model("uploads/knowledgefile"),
    *admin_model("uploads/knowledgechunk", GET_add=403, POST_add=403, POST_change=302),
)
# fmt: on

KNOWN_BUGS: dict[tuple[str, str, str], str] = {
    # (method, route, principal) → why the product does not answer as the table says yet: an
    # expected failure, strict (it fails once fixed: then remove it from here). Found by this
    # test and fixed since: the admin's user-delete page listed conversations by title (the
    # start of the first message), the admin's add form for a chunk saved an empty row (500),
    # and the `.{format}` twins of the detail actions answered 500 (the router has none now).
}


def known_bug(entry: Row, principal: str) -> str | None:
    """Why this row does not answer `principal` as it should yet, if it does not."""
    return KNOWN_BUGS.get((entry.method, base_of(entry.route) or entry.route, principal))


# ---- the URLconf's routes ---------------------------------------------------------------------
def patterns(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from patterns(entry, pattern)
        else:
            assert isinstance(entry, URLPattern), entry
            yield pattern


def route_of(pattern: str) -> str:
    """A resolver pattern as this table spells it: `api/v1/^jobs/(?P<pk>[^/.]+)/$` →
    `/api/v1/jobs/{pk}/`, `v1/models/<path:model_id>` → `/v1/models/{model_id}`."""
    text = re.sub(r"\(\?!.*?\)", "", pattern)  # the web app's look-ahead
    text = re.sub(r"\\\.\(\?P<format>[^)]*\)/\?", ".{format}", text)
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
    text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)
    return "/" + text.replace("^", "").replace("$", "")


def base_of(route: str) -> str | None:
    """A REST route's `.{format}` twin (`/api/v1/jobs.{format}` → `/api/v1/jobs/`), else None."""
    if not route.endswith("{format}"):
        return None
    base = re.sub(r"\.?\{format\}$", "", route)
    return base if base.endswith("/") else base + "/"


def routes() -> list[str]:
    return list(dict.fromkeys(route_of(p) for p in patterns(get_resolver())))


# ---- real objects for the paths to name ------------------------------------------------------
@dataclass
class World:
    users: dict[str, User]
    tokens: dict[str, str]
    kernel: Kernel
    objects: dict[str, Any]  # by the REST resource name: "conversations", "jobs", …
    admin_objects: dict[str, Any]  # by the admin's app/model: "constellation/conversation", …

    def argument(self, before: str, name: str) -> str:
        """The value of `{name}` in a route, from the route's text before it."""
        if name in ("index", "kernel"):
            return str(self.kernel.index)
        if name == "pk":
            return str(self.objects[before.rstrip("/").rsplit("/", 1)[-1]].pk)
        if name == "content_type_id":
            return str(ContentType.objects.get_for_model(Conversation).pk)
        if name == "object_id" and before.startswith("/admin/r/"):
            return str(self.objects["conversations"].pk)
        if name == "object_id":
            return quote(str(self.admin_objects[before.removeprefix("/admin/").rstrip("/")].pk))
        if name == "id":  # the admin's password form of a user
            return str(self.users[DEVELOPER].pk)
        fixed = {"model_id": MODEL, "app_label": "constellation", "url": "no-such-page/"}
        fixed["digest"] = f"sha256:{'0' * 64}"  # a blob nobody uploaded
        fixed["path"] = "chat"  # a client-side route of the React app
        fixed["version"], fixed["name"] = "1", "anchors.json"  # a bundle nobody published
        return fixed[name]

    def path(self, route: str) -> str:
        route = route.replace(".{format}", ".json").replace("{format}", ".json")
        return re.sub(r"\{(\w+)\}", lambda m: self.argument(route[: m.start()], m.group(1)), route)


def make_world() -> World:
    users = {
        DEVELOPER: User.objects.create(username="dev"),
        STAFF: User.objects.create(username="ada", is_staff=True, is_superuser=True),
        OTHER: User.objects.create(username="eve"),
    }
    tokens = {who: Token.objects.create(user=user).key for who, user in users.items()}
    dev = users[DEVELOPER]
    kernel = Kernel.objects.create(index=7, role=str(e8.roles()[7]), anchor=e8.anchor(7).tolist())
    conversation = Conversation.objects.create(user=dev, title=f"{PRIVATE} chat")
    interaction = Interaction.objects.create(
        endpoint="app-chat",
        model=MODEL,
        user=dev,
        conversation=conversation,
        kernel=7,
        messages=[{"role": "user", "content": PRIVATE}],
        prompt=f"user: {PRIVATE}",
        response=f"{PRIVATE}, answered",
    )
    upload = KnowledgeFile.objects.create(
        original_name="notes.txt",
        file="knowledge/notes.txt",
        sha256="0" * 64,
        size_bytes=5,
        uploaded_by=dev,
    )
    job = FineTuneJob.objects.create(kind="adapter", target_kernels=[7], created_by=dev)
    node = Node.objects.create(name="edge-1", created_by=dev)
    objects = {
        "conversations": conversation,
        "interactions": interaction,
        "uploads": upload,
        "jobs": job,
        "nodes": node,
        "learning-events": LearningEvent.objects.create(kind="job", message="queued", job=job),
        "signals": LearningSignal.objects.create(
            kind="accepted",
            value=0.9,
            reason="thumbs up",
            interaction=interaction,
            kernel_index=7,
            user=dev,
        ),
        "cycles": LearningCycle.objects.create(
            trigger="manual", requested_by=dev, status="skipped", finished_at=timezone.now()
        ),
        "rounds": FlowerRound.objects.create(kernels=[7], status="completed"),
    }
    admin_objects = {
        "auth/group": Group.objects.create(name="readers"),
        "auth/user": dev,
        "authtoken/tokenproxy": TokenProxy.objects.get(user=dev),
        "constellation/kernel": kernel,
        "constellation/modelconfig": ModelConfig.objects.create(
            name="mine:latest", base=MODEL, modelfile=f"FROM {MODEL}"
        ),
        "constellation/interaction": interaction,
        "constellation/conversation": conversation,
        "federation/node": node,
        "learning/finetunejob": job,
        "learning/jobmetric": JobMetric.objects.create(
            job=job, step=1, kernel=7, loss=3.0, lr=1e-3, grad_norm=1.0, tokens_per_s=100.0
        ),
        "learning/learningevent": objects["learning-events"],
        "learning/learningsignal": objects["signals"],
        "uploads/knowledgefile": upload,
        "uploads/knowledgechunk": KnowledgeChunk.objects.create(
            upload=upload, index=0, text="hello", n_tokens=1, basin_bytes=b"\0" * 256
        ),
    }
    return World(users, tokens, kernel, objects, admin_objects)


ADDRESSES = itertools.count(1)
NOTES = itertools.count(1)


def client_of(world: World, principal: str, path: str) -> Client:
    """The principal's client: a DRF token on /api/v1/, a session elsewhere. Each client comes
    from its own address, so the login and join throttles (20 a minute) never answer 429."""
    n = next(ADDRESSES)
    client = Client(
        raise_request_exception=False, REMOTE_ADDR=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    )
    user = world.users.get(principal)
    if user is None:
        return client
    if path.startswith("/api/v1/"):
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {world.tokens[principal]}"
    else:
        client.force_login(user)
    return client


def send(client: Client, method: str, path: str, body: Body, world: World) -> HttpResponseBase:
    if callable(body):
        body = body(world)
    if body == UPLOAD:  # each upload its own text: another's would be a duplicate
        text = f"note {next(NOTES)} about sockets\n".encode()
        note = SimpleUploadedFile("matrix.txt", text, "text/plain")
        return client.post(path, {"file": note})
    if body is None:
        return client.generic(method, path)
    return client.generic(method, path, json.dumps(body), "application/json")


def content(response: HttpResponseBase) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)  # type: ignore[attr-defined]
    return response.content  # type: ignore[attr-defined]


@pytest.fixture
def world(db: None, settings: Any, tmp_path: Path) -> World:
    settings.API_KEY_REQUIRED = False  # the server binds loopback only (the default)
    settings.FEDERATION = "central"  # the nodes' allow-list and joins mean something here
    settings.MODELS_DIR = tmp_path / "models"  # no trained model: no inference starts
    settings.MEDIA_ROOT = str(tmp_path / "uploads")  # uploads land in this test's folder
    settings.READY_TIMEOUT_S = 0.1  # /readyz waits that long for the worker that is not there
    return make_world()


# ---- the matrix -------------------------------------------------------------------------------
INFERENCE = ("/api/", "/v1/")  # the Ollama/OpenAI API (not /api/v1/): loopback or API key


def is_inference(route: str) -> bool:
    return route.startswith(INFERENCE) and not route.startswith("/api/v1/")


def table() -> dict[tuple[str, str], Row]:
    index: dict[tuple[str, str], Row] = {}
    for entry in ACCESS:
        key = (entry.method, entry.route)
        assert key not in index, f"two rows for {entry.method} {entry.route}"
        index[key] = entry
    return index


def cases() -> Iterator[Any]:
    """Every row as every principal, and each REST route's `.{format}` twin as its route's first
    row (the method it is for). A principal the row has a known bug for goes apart, as an
    expected failure."""
    rows = list(ACCESS)
    for route in routes():
        base = [entry for entry in ACCESS if entry.route == base_of(route)]
        rows += [replace(base[0], route=route)] if base else []
    for entry in rows:
        ident = f"{entry.method} {entry.route}"
        bugs = {principal: known_bug(entry, principal) for principal in PRINCIPALS}
        clean = tuple(principal for principal, bug in bugs.items() if bug is None)
        if clean:
            yield pytest.param(entry, clean, id=ident)
        for principal, bug in bugs.items():
            if bug is not None:
                mark = pytest.mark.xfail(strict=True, reason=bug)
                yield pytest.param(entry, (principal,), id=f"{ident} {principal}", marks=mark)


def shown(expect: Expect) -> str:
    return str(expect) if isinstance(expect, int) else " or ".join(map(str, sorted(expect)))


def statuses(expect: Expect) -> frozenset[int]:
    return frozenset([expect]) if isinstance(expect, int) else expect


def ask(world: World, principal: str, entry: Row) -> tuple[int, str]:
    """The status `principal` gets for the row, and what is wrong with the answer besides. Each
    request is undone after (a developer's delete leaves the object for staff to try)."""
    path = world.path(entry.route)
    with transaction.atomic():
        response = send(client_of(world, principal, path), entry.method, path, entry.body, world)
        transaction.set_rollback(True)
    wrong = ""
    if principal in (STAFF, OTHER) and PRIVATE.encode() in content(response):
        wrong = "the answer shows the developer's chat"
    elif response.status_code == 302 and path.startswith("/admin/") and principal != STAFF:
        where = response["Location"]  # the login page, or the index that sends them there
        if not (where.startswith("/admin/login/") or where == "/admin/"):
            wrong = f"sent to {where}, not to the admin's login"
    return response.status_code, wrong


@pytest.mark.parametrize(("entry", "principals"), list(cases()))
def test_it_answers_each_principal_as_the_table_says(
    world: World, entry: Row, principals: tuple[str, ...]
) -> None:
    wrong = []
    for principal in principals:
        status, trouble = ask(world, principal, entry)
        expected = entry.expected(principal)
        if status not in statuses(expected):
            wrong.append(f"{principal} gets {status}, the table says {shown(expected)}")
        elif trouble:
            wrong.append(f"{principal}: {trouble}")
    assert not wrong, f"{entry.method} {world.path(entry.route)}: " + "; ".join(wrong)


def test_it_has_a_row_for_every_route() -> None:
    known = {route for _, route in table()}  # table() refuses two rows for one method and route
    found = routes()
    missing = [route for route in found if (base_of(route) or route) not in known]
    assert not missing, (
        f"routes with no row in ACCESS ({Path(__file__).name}): {missing}. Add a row for each "
        f"method the view takes and one it does not, with the status each principal must get; "
        f"then regenerate docs/access.md: {REGENERATE}"
    )
    assert known <= set(found), f"rows for routes that are gone: {sorted(known - set(found))}"


@pytest.mark.parametrize(
    "entry", [e for e in ACCESS if is_inference(e.route)], ids=lambda e: f"{e.method} {e.route}"
)
def test_it_wants_the_api_key_beyond_loopback_whoever_asks(
    world: World, settings: Any, entry: Row
) -> None:
    settings.API_KEY_REQUIRED, settings.API_KEY = True, "the-key"
    for principal in PRINCIPALS:  # neither a session nor a DRF token is the key
        status, _ = ask(world, principal, entry)
        assert status == 401, f"{entry.method} {entry.route} as {principal}: {status}"


# ---- what the table promises, whatever its values -------------------------------------------
PUBLIC = (
    *("/healthz", "/readyz", "/", "/{path}", "/admin/login/", "/api/v1/federation/join/"),
    *("/api/v1/federation/flower/keys/", "/api/v1/federation/bundles/{version}/manifest/"),
    "/api/v1/federation/bundles/{version}/files/{name}",
    *("/api/v1/auth/csrf/", "/api/v1/auth/login/", "/api/v1/auth/logout/", "/api/v1/auth/token/"),
)  # anyone may call these (the join: with a join token), and the inference API on loopback
PRIVATE_TO_OWNER = ("/api/v1/chat/", "/api/v1/conversations/{pk}/", "/api/v1/interactions/{pk}/")
STAFF_WRITES = ("/api/v1/jobs", "/api/v1/nodes", "/api/v1/learning/loop", "/api/v1/kernels/")


def succeeds(expect: Expect) -> bool:
    return any(200 <= status < 300 for status in statuses(expect))


def test_the_table_lets_anonymous_write_nothing_private() -> None:
    for entry in ACCESS:
        if entry.route in PUBLIC or is_inference(entry.route):
            continue
        status = entry.expected(ANONYMOUS)
        if entry.route.startswith("/api/v1/"):  # a read may get 405 first from a plain view
            allowed = (401, 403) if entry.method in WRITES else (401, 405)
            assert status in allowed, f"{entry.method} {entry.route}: anonymous gets {status}"
        elif entry.method in WRITES:  # the admin: 302 to its login page
            assert not succeeds(status), f"{entry.method} {entry.route}: anonymous gets {status}"


def test_the_table_keeps_developers_off_jobs_nodes_and_the_admin() -> None:
    for entry in ACCESS:
        for principal in (DEVELOPER, OTHER):
            status = entry.expected(principal)
            if entry.route.startswith(STAFF_WRITES) and entry.method in WRITES:
                assert status in (403, 405), f"{entry.method} {entry.route}: {principal} {status}"
            if entry.route.startswith("/admin/") and entry.route != "/admin/login/":
                assert status == 302, f"{entry.method} {entry.route}: {principal} gets {status}"


def test_the_table_keeps_a_chat_to_its_owner() -> None:
    private = [
        entry
        for entry in ACCESS
        if entry.route.startswith(PRIVATE_TO_OWNER)
        or re.match(r"/admin/constellation/(conversation|interaction)/\{", entry.route)
    ]
    assert len(private) >= 20, f"PRIVATE_TO_OWNER finds {len(private)} rows: did routes move?"
    for entry in private:
        for principal in (STAFF, OTHER):
            status = entry.expected(principal)
            assert not succeeds(status), f"{entry.method} {entry.route}: {principal} gets {status}"


# ---- docs/access.md ---------------------------------------------------------------------------
SECTIONS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("Probes and the web app", lambda r: not r.startswith(("/api/", "/v1/", "/admin/"))),
    ("REST API (`/api/v1/`)", lambda r: r.startswith("/api/v1/")),
    ("Ollama/OpenAI API", is_inference),
    ("Django admin (`/admin/`)", lambda r: r.startswith("/admin/")),
)

INTRO = f"""# Access matrix

Every route of the URLconf, each method its view takes and one or two it does not, and the status
each principal gets. Generated from the table `ACCESS` in `tests/qigcenter/test_access_matrix.py`,
whose test sends every one of these requests (to real objects the developer owns) and fails when a
route has no row or when this file differs from the table. After changing the table:

```
{REGENERATE}
```

| principal | who |
|---|---|
| anonymous | nobody signed in |
| developer | not staff; owns every object the paths name |
| staff | a staff superuser (the `admin` that `make up` creates); owns nothing |
| other developer | not staff; owns nothing |

The developer's objects: a conversation with one chat turn (an `app-chat` interaction), an upload
with a chunk, a learning signal; it is the creator of the job, node and learning cycle. Signed-in
principals send `Authorization: Token …` under `/api/v1/` and a session cookie elsewhere.

What the statuses mean here:

- **2xx**: allowed (a body is sent where the route wants one).
- **302**: the Django admin sends anonymous and non-staff users to its login page; staff who open
  another user's conversation or chat turn there are sent back to the index ("doesn't exist").
- **400**: let through, and the request's own body refused. The Ollama/OpenAI rows send no body,
  so no inference starts.
- **401**: not signed in (REST API, with `WWW-Authenticate: Token`).
- **403**: signed in, not allowed (staff only; the uploader only); for the join, a wrong token.
- **404**: not there for this principal: another user's conversation or chat turn is private,
  staff included.
- **405**: the view does not take the method (an anonymous REST call gets 401 first).
- **409**, **503**: allowed, and the state refused it (no earlier kernel version; a queued job is
  not paused; no trained model yet for the chat).

The node is a central (`QIG_FEDERATION=central`) with no trained model, bound to loopback, so the
Ollama/OpenAI routes are open to everyone. Beyond loopback each of them answers 401 to every
principal without `Authorization: Bearer $QIG_API_KEY` (tested too). Each REST route also answers
with a format suffix (`/api/v1/jobs.json`, `/api/v1/jobs/{{pk}}/history.json`) as its first row
says; that request is sent as each principal too. Besides the status, no answer to staff or the
other developer may contain the developer's chat.
"""


def markdown() -> str:
    lines, notes = [INTRO.rstrip("\n")], list[str]()
    for title, belongs in SECTIONS:
        lines += ["", f"## {title}", "", "| method | route | " + " | ".join(PRINCIPALS) + " |"]
        lines.append("|---|---|" + "---|" * len(PRINCIPALS))
        for entry in (e for e in ACCESS if belongs(e.route)):
            cells = []
            for principal in PRINCIPALS:
                cells.append(shown(entry.expected(principal)))
                bug = known_bug(entry, principal)
                if bug:
                    notes.append(
                        f"{len(notes) + 1}. {entry.method} `{entry.route}` as {principal}: {bug}"
                    )
                    cells[-1] += f" ({len(notes)})"
            lines.append(f"| {entry.method} | `{entry.route}` | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "## Known bugs", "", "The product does not answer these as the table says"]
        lines += ["yet; their tests are expected failures, and fail once fixed.", "", *notes]
    return "\n".join(lines) + "\n"


def test_the_doc_is_the_table() -> None:
    text = markdown()
    if os.environ.get("QIG_WRITE_ACCESS_DOC"):
        DOC.write_text(text, encoding="utf-8")
    current = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    assert current == text, f"docs/access.md is not the table ACCESS; regenerate it: {REGENERATE}"
