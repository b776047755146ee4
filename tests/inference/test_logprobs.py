"""Log-probabilities (`logprobs`, `top_logprobs`) on Ollama's generate and chat and on `/v1`,
through raw HTTP and the official clients, against the live server."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"
GREEDY = {"num_predict": 10, "temperature": 0, "seed": 1}


def post(live: Serving, path: str, body: dict) -> httpx.Response:
    return httpx.post(live.base + path, json=body, timeout=60)


def check_entries(entries: list[dict], top: int, greedy: bool) -> None:
    for e in entries:
        assert e["logprob"] <= 0 and math.isfinite(e["logprob"])
        assert bytes(e["bytes"]).decode("utf-8", errors="replace") == e["token"]
        alts = e["top_logprobs"]
        assert len(alts) == top
        assert [a["logprob"] for a in alts] == sorted((a["logprob"] for a in alts), reverse=True)
        if greedy and alts:  # the greedy pick is the most likely token
            assert alts[0]["token"] == e["token"] and alts[0]["logprob"] == e["logprob"]


def test_ollama_generate_gives_one_entry_per_token_streamed_and_not(live: Serving) -> None:
    body = {"model": MODEL, "prompt": "import os", "options": GREEDY, "logprobs": True}
    whole = post(live, "/api/generate", {**body, "stream": False, "top_logprobs": 3}).json()
    entries = whole["logprobs"]
    assert len(entries) == whole["eval_count"]
    check_entries(entries, 3, greedy=True)
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == whole["response"]
    lines = [json.loads(x) for x in post(live, "/api/generate", body).text.splitlines()]
    streamed = [e for line in lines for e in line.get("logprobs", [])]
    assert [e["token"] for e in streamed] == [e["token"] for e in entries]
    assert all(e["top_logprobs"] == [] for e in streamed)  # top_logprobs 0: none
    plain = post(live, "/api/generate", {**body, "logprobs": False, "stream": False}).json()
    assert "logprobs" not in plain


def test_the_ollama_client_reads_chat_logprobs(live: Serving) -> None:
    client = ollama.Client(host=live.base)
    reply = client.chat(
        MODEL,
        messages=[{"role": "user", "content": "hello"}],
        options=GREEDY,
        logprobs=True,
        top_logprobs=2,
    )
    assert reply.logprobs and len(reply.logprobs) == reply.eval_count
    assert all(len(lp.top_logprobs or []) == 2 for lp in reply.logprobs)


def test_openai_chat_and_legacy_completions_logprobs(live: Serving) -> None:
    client: Any = openai.OpenAI(base_url=live.base + "/v1", api_key="unused")
    messages = [{"role": "user", "content": "hello"}]
    chat = client.chat.completions.create(
        model=MODEL, messages=messages, logprobs=True, top_logprobs=2, max_tokens=8, seed=2
    )
    content = chat.choices[0].logprobs.content
    assert content and len(content) == chat.usage.completion_tokens
    assert all(len(c.top_logprobs) == 2 and c.logprob <= 0 for c in content)
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, logprobs=True, max_tokens=8, seed=2, stream=True
    )
    tokens = [
        c.token
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for c in chunk.choices[0].logprobs.content or []
    ]
    assert tokens == [c.token for c in content]
    legacy = client.completions.create(model=MODEL, prompt="def", logprobs=2, max_tokens=6)
    lp = legacy.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.tokens) == len(lp.token_logprobs or [])
    assert "".join(lp.tokens) == legacy.choices[0].text and (lp.text_offset or [-1])[0] == 0


def test_bad_logprobs_requests_are_refused(live: Serving) -> None:
    base = {"model": MODEL, "prompt": "x", "stream": False}
    for extra, says in (
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "logprobs: true"),
        ({"logprobs": "yes"}, "logprobs"),
    ):
        answer = post(live, "/api/generate", {**base, **extra})
        assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    v1 = post(live, "/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 9})
    assert v1.status_code == 400 and "logprobs" in v1.json()["error"]["message"]
