"""What the answering views (Ollama, OpenAI, the app's chat) read from an HTTP request alike:
the JSON body, the embedding input and the client. Each view keeps its own error texts (clients
and tests read them): they are parameters here."""

from __future__ import annotations

import math
from typing import Any

from django.http import HttpRequest

from constellation.errors import BadRequest
from constellation.interactions import Client
from qigcenter import jsonbody

# Ollama's text for a body that is not JSON ({msg}: what was wrong, and where)
INVALID_JSON = "invalid character in request body: {msg}"


def json_object(raw: bytes, invalid: str = INVALID_JSON) -> dict[str, Any]:
    """A request body that must be a JSON object; `invalid` words what `jsonbody.loads` refused
    (a syntax error, NaN or Infinity, a number out of range, nesting too deep)."""
    try:
        body = jsonbody.loads(raw)
    except jsonbody.InvalidJSON as exc:
        raise BadRequest(
            invalid.format(msg=exc) if exc.syntax else f"invalid value: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise BadRequest("invalid request body: expected a JSON object")
    return body


def read_json(request: HttpRequest) -> dict[str, Any]:
    """The body of an Ollama or OpenAI request (Ollama's error texts)."""
    if not request.body:
        raise BadRequest("missing request body")
    return json_object(request.body)


def embedding_input(value: Any, error: str, allow_empty: bool) -> list[str]:
    """`input` of an embedding request: a string or a list of strings (none is an empty list
    where `allow_empty`); anything else is `BadRequest(error)`."""
    texts = [value] if isinstance(value, str) else value
    if texts is None and allow_empty:
        texts = []
    if not isinstance(texts, list) or not (texts or allow_empty):
        raise BadRequest(error)
    if not all(isinstance(t, str) for t in texts):
        raise BadRequest(error)
    return texts


def cut_dimensions(vectors: list[list[float]], dimensions: int) -> list[list[float]]:
    """Ollama's `dimensions`: the first `dimensions` components, renormalised to unit length."""
    size = len(vectors[0]) if vectors else dimensions
    if not 1 <= dimensions <= size:
        raise BadRequest(f"invalid value for field 'dimensions': 1 to {size}, got {dimensions}")
    cut = []
    for vector in vectors:
        head = vector[:dimensions]
        norm = math.sqrt(sum(x * x for x in head)) or 1.0
        cut.append([x / norm for x in head])
    return cut


def client_of(request: HttpRequest, user: Any) -> Client:
    return Client(
        user_id=user.pk if user is not None and user.is_authenticated else None,
        user_agent=request.headers.get("User-Agent", ""),
        remote_addr=request.META.get("REMOTE_ADDR", "") or "",
    )
