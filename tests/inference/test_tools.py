"""Tool calls against the live server: the model's reply is text or one call that is bound to be
valid (a tool offered, arguments matching its parameters), in Ollama's shape (`tool_calls` whole
in a `done: false` line, `arguments` an object) and OpenAI's (ids, `arguments` a JSON text,
streamed deltas, `finish_reason: "tool_calls"`)."""

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
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {"name": "weather", "description": "Forecast", "parameters": WEATHER},
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
OPTIONS = {"num_predict": 96, "seed": 3, "temperature": 0.9}


def post(live: Serving, path: str, body: dict) -> httpx.Response:
    return httpx.post(live.base + path, json=body, timeout=60)


def check_call(name: str, arguments: dict) -> None:
    assert name in PARAMS
    jsonschema.validate(arguments, PARAMS[name])


def test_ollama_chat_returns_a_required_call_whole_streamed_and_not(live: Serving) -> None:
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": "required"}
    whole = post(live, "/api/chat", {**body, "stream": False, "options": OPTIONS}).json()
    assert whole["done"] and whole["message"]["content"] == ""
    (call,) = whole["message"]["tool_calls"]
    check_call(call["function"]["name"], call["function"]["arguments"])
    lines = [
        json.loads(x)
        for x in post(live, "/api/chat", {**body, "options": OPTIONS}).text.splitlines()
    ]
    assert lines[-1]["done"] and lines[-1]["done_reason"] == "stop"
    with_calls = [x for x in lines if x["message"].get("tool_calls")]
    assert len(with_calls) == 1 and not with_calls[0]["done"]
    assert with_calls[0]["message"]["tool_calls"] == whole["message"]["tool_calls"]  # same seed
    assert "".join(x["message"]["content"] for x in lines) == ""  # the call is never text


def test_auto_lets_the_model_choose_and_both_answers_are_well_formed(live: Serving) -> None:
    client = ollama.Client(host=live.base)
    for seed in range(4):
        reply = client.chat(MODEL, messages=ASK, tools=TOOLS, options={**OPTIONS, "seed": seed})
        for call in reply.message.tool_calls or []:
            check_call(call.function.name, dict(call.function.arguments))
        if not reply.message.tool_calls:
            assert not (reply.message.content or "").startswith("<tool_call>")


def test_openai_named_and_required_calls_streamed_and_not(live: Serving) -> None:
    client: Any = openai.OpenAI(base_url=live.base + "/v1", api_key="unused")
    named = {"type": "function", "function": {"name": "add"}}
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice=named, max_tokens=64, seed=1
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.function.name == "add"
    check_call("add", json.loads(call.function.arguments))
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=96, stream=True
    )
    calls: list[Any] = []
    reasons: list[Any] = []
    text = ""
    for chunk in stream:
        delta = chunk.choices[0].delta
        calls += delta.tool_calls or []
        text += delta.content or ""
        reasons.append(chunk.choices[0].finish_reason)
    assert text == "" and reasons[-1] == "tool_calls" and len(calls) == 1
    check_call(calls[0].function.name, json.loads(calls[0].function.arguments))


def test_a_conversation_carries_calls_and_their_results(live: Serving) -> None:
    call = {"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    ollama_history = [
        {"role": "user", "content": "2 + 3?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "5", "tool_name": "add"},
    ]
    body = {"model": MODEL, "messages": ollama_history, "tools": TOOLS, "stream": False}
    answered = post(live, "/api/chat", {**body, "options": {"num_predict": 8}})
    assert answered.status_code == 200, answered.text
    openai_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
    }
    openai_history = [
        {"role": "user", "content": "2 + 3?"},
        {"role": "assistant", "content": None, "tool_calls": [openai_call]},
        {"role": "tool", "content": "5", "tool_call_id": "call_1"},
    ]
    v1 = {"model": MODEL, "messages": openai_history, "tools": TOOLS, "max_tokens": 8}
    assert post(live, "/v1/chat/completions", v1).status_code == 200


@pytest.mark.parametrize(
    ("tools", "choice", "says"),
    [
        ([{"type": "function"}], "auto", "tools[0]"),
        ([{"type": "function", "function": {"name": ""}}], "auto", "tools[0].function.name"),
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "no tool named 'nope'"),
        (TOOLS, "sometimes", "tool_choice"),
        (
            [
                {
                    "type": "function",
                    "function": {"name": "u", "parameters": {"type": "array", "uniqueItems": True}},
                }
            ],
            "required",
            "uniqueItems",
        ),
    ],
)
def test_bad_tools_are_refused_with_the_reason(
    live: Serving, tools: list, choice: object, says: str
) -> None:
    body = {"model": MODEL, "messages": ASK, "tools": tools, "tool_choice": choice}
    refused = post(live, "/v1/chat/completions", body)
    assert refused.status_code == 400 and says in refused.json()["error"]["message"], refused.text
    refused = post(live, "/api/chat", {**body, "stream": False})
    assert refused.status_code == 400 and says in refused.json()["error"], refused.text
