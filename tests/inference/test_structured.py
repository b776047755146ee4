"""Structured outputs against the live server: Ollama's `format` ("json" or a schema) and OpenAI's
`response_format`, streamed and not, through raw HTTP and the official clients. The tiny model
writes noise; the grammar makes every reply that ends parse and match."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest

from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

MODEL = "qig-constellation:latest"
KERNEL = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string", "enum": ["MEMORY", "REASONING", "PERCEPTION", "ACTION"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
            "required": ["id", "email"],
            "additionalProperties": False,
        },
        "active": {"type": "boolean"},
    },
    "required": ["name", "role", "tags", "owner", "active"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe kernel 57 as JSON."}]


def post(live: Serving, path: str, body: dict) -> httpx.Response:
    return httpx.post(live.base + path, json=body, timeout=60)


@pytest.mark.parametrize("fmt", ["json", KERNEL])
def test_ollama_format_streamed_and_not_parses_and_matches(live: Serving, fmt: object) -> None:
    schema = KERNEL if isinstance(fmt, dict) else {"type": "object"}
    options = {"num_predict": 120, "seed": 4, "temperature": 0.9}
    chat = {"model": MODEL, "messages": ASK, "format": fmt, "options": options}
    whole = post(live, "/api/chat", {**chat, "stream": False}).json()
    assert whole["done_reason"] == "stop", whole
    jsonschema.validate(json.loads(whole["message"]["content"]), schema)
    streamed = post(live, "/api/chat", chat)
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    text = "".join(line["message"]["content"] for line in lines)
    assert lines[-1]["done"] and text == whole["message"]["content"]  # same seed
    generated = post(
        live, "/api/generate", {"model": MODEL, "prompt": "{", "format": fmt, "stream": False}
    ).json()
    jsonschema.validate(json.loads(generated["response"]), schema)


def test_openai_response_format_json_object_and_strict_schema(live: Serving) -> None:
    client: Any = openai.OpenAI(base_url=live.base + "/v1", api_key="unused")
    loose = client.chat.completions.create(
        model=MODEL, messages=ASK, response_format={"type": "json_object"}, seed=1, max_tokens=96
    )
    assert loose.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)
    strict = {"name": "kernel", "schema": KERNEL, "strict": True}
    parts = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": strict},
        stream=True,
        max_tokens=128,
        temperature=1.0,
    )
    text = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    jsonschema.validate(json.loads(text), KERNEL)


def test_the_ollama_client_gets_a_document_for_a_pydantic_schema(live: Serving) -> None:
    client = ollama.Client(host=live.base)
    reply = client.chat(MODEL, messages=ASK, format=KERNEL, options={"num_predict": 120})
    jsonschema.validate(json.loads(reply.message.content or ""), KERNEL)


def test_a_format_that_cannot_be_enforced_is_refused_with_its_name(live: Serving) -> None:
    base = {"model": MODEL, "messages": ASK, "stream": False}
    unsupported = post(
        live, "/api/chat", {**base, "format": {"type": "array", "uniqueItems": True}}
    )
    assert unsupported.status_code == 400 and "uniqueItems" in unsupported.json()["error"]
    nonsense = post(live, "/api/chat", {**base, "format": "yaml"})
    assert nonsense.status_code == 400 and "format" in nonsense.json()["error"]
    empty = post(live, "/api/chat", {**base, "format": "", "options": {"num_predict": 2}})
    assert empty.status_code == 200  # "" is no format, as in Ollama
    v1 = post(
        live,
        "/v1/chat/completions",
        {"model": MODEL, "messages": ASK, "response_format": {"type": "json_schema"}},
    )
    assert v1.status_code == 400 and "json_schema" in v1.json()["error"]["message"]
    v1 = post(
        live,
        "/v1/chat/completions",
        {"model": MODEL, "messages": ASK, "response_format": {"type": "xml"}},
    )
    assert v1.status_code == 400 and "response_format" in v1.json()["error"]["message"]
