"""Property-based fuzzing of the Ollama and OpenAI endpoints on the live server (hypothesis):
hostile bodies and options — wrong types, huge and non-finite numbers, deep nesting, bytes that
are not JSON — must never get a 5xx nor hang, and a normal request is still answered after each
batch. Bounded (a fixed number of examples, derandomized) so CI runs it in about a minute."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(600)]

MODEL = "qig-constellation:latest"
ENDPOINTS = [
    *("/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show"),
    *("/api/create", "/api/copy", "/api/pull", "/api/push"),
    *("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
]
OPTION_NAMES = [
    *("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n"),
    *("seed", "num_predict", "num_ctx", "stop", "ignore_eos", "mirostat"),
]
# Numbers as a client could send them, raw: the edges of every range the engine has.
HOSTILE_NUMBERS = [
    *("0", "-1", "1", "-0.0", "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1e-400"),
    *(str(2**63), str(-(2**63) - 1), str(2**64), str(2**70), "9" * 5000, "0.5", "256"),
    *("2147483648", "-2147483649", "1e308", "3.4e38"),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard", 3])},
        optional={"content": values, "images": values, "tool_calls": values},
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.just(MODEL), values),
        "prompt": values,
        "messages": st.one_of(messages, values),
        "options": st.one_of(st.dictionaries(st.sampled_from(OPTION_NAMES), values), values),
        "stream": values,
        "keep_alive": values,
        "format": values,
        "tools": values,
        "max_tokens": values,
        "temperature": values,
        "input": values,
        "from": values,
        "parameters": values,
        "source": values,
        "destination": values,
        "raw": values,
        "context": values,
        "response_format": values,
    },
)


def raw_option(name: str, number: str) -> bytes:
    """A valid generate request but for one option, written as raw text (NaN is not JSON)."""
    return (
        b'{"model": "%s", "prompt": "hi", "stream": false, "options": {"num_predict": 2, "%s": %s}}'
        % (MODEL.encode(), name.encode(), number.encode())
    )


def answered(live: Serving, path: str, content: bytes) -> httpx.Response:
    # A whole answer read within 60 s: a hang fails here (the engine answers in well under 1 s).
    response = httpx.post(
        live.base + path,
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code < 500, (path, content[:300], response.status_code, response.text)
    return response


def still_serving(live: Serving) -> None:
    body = {"model": MODEL, "prompt": "the", "stream": False, "options": {"num_predict": 3}}
    answer = httpx.post(live.base + "/api/generate", json=body, timeout=60)
    assert answer.status_code == 200 and answer.json()["done"] is True, answer.text


def bounded(body: dict[str, Any]) -> dict[str, Any]:
    """Keep a generation that would be valid short: the fuzzer tests input, not decode speed."""
    options = body.get("options")
    if isinstance(options, dict) and "num_predict" not in options:
        options["num_predict"] = 4
    elif "options" not in body:
        body["options"] = {"num_predict": 4}
    if "max_tokens" not in body:
        body["max_tokens"] = 4
    return body


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(ENDPOINTS), body=bodies)
def test_hostile_bodies_never_get_a_server_error(live: Serving, path: str, body: dict) -> None:
    answered(live, path, json.dumps(bounded(body)).encode())


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(ENDPOINTS), content=st.binary(max_size=200))
def test_bytes_that_are_not_json_never_get_a_server_error(
    live: Serving, path: str, content: bytes
) -> None:
    assert answered(live, path, content).status_code in (200, 400, 404)


@pytest.mark.parametrize("name", OPTION_NAMES)
def test_every_option_at_every_edge_is_answered_or_refused_with_400(
    live: Serving, name: str
) -> None:
    for number in HOSTILE_NUMBERS:
        answer = answered(live, "/api/generate", raw_option(name, number))
        assert answer.status_code in (200, 400), (name, number, answer.text)
    still_serving(live)


def test_a_normal_request_is_answered_after_the_fuzzing(live: Serving) -> None:
    still_serving(live)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    assert httpx.post(live.base + "/v1/chat/completions", json=chat, timeout=60).status_code == 200
