"""The `openai` Python client against the live server's /v1 routes."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"


@pytest.fixture(scope="module")
def client(live: Serving) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base + "/v1", api_key="unused-on-loopback")


def test_chat_completions_streamed_and_not(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is a socket?"}]
    whole = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=10,
        seed=5,
    )
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage and 0 < whole.usage.completion_tokens <= 10
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=10,
            seed=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_completions_models_and_embeddings(client: openai.OpenAI) -> None:
    done = client.completions.create(model=MODEL, prompt="import os", max_tokens=8, seed=1)
    assert done.choices[0].finish_reason in ("stop", "length") and done.usage
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL
    emb = client.embeddings.create(model=MODEL, input=["a", "b c"])
    assert [d.index for d in emb.data] == [0, 1] and len(emb.data[0].embedding) == 64


def test_errors_have_openai_shapes(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
