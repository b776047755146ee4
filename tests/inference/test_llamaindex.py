"""LlamaIndex's Ollama and OpenAI-compatible LLMs against the live server: clients nobody here
wrote. `OpenAILike`, not `OpenAI`: llama-index's `OpenAI` refuses a model name OpenAI does not
list (it looks the context window up by name)."""

from __future__ import annotations

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, MessageRole
from llama_index.core.llms.llm import LLM
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.ollama import Ollama
from llama_index.llms.openai_like import OpenAILike
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.inference.answer import STRUCTURED_NUM_PREDICT, Answer, assert_is_an_answer
from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"
NUM_PREDICT = 12
SEED = 3
CLIENTS = ("ollama", "openai")


def make_llm(live: Serving, client: str, num_predict: int = NUM_PREDICT) -> LLM:
    if client == "ollama":
        # No context_window: the client asks /api/show for `<arch>.context_length`.
        return Ollama(
            model=MODEL,
            base_url=live.base,
            temperature=0.8,
            request_timeout=60,
            additional_kwargs={"num_predict": num_predict, "seed": SEED},
        )
    return OpenAILike(
        model=MODEL,
        api_base=live.base + "/v1",
        api_key="unused-on-loopback",
        temperature=0.8,
        max_tokens=num_predict,
        additional_kwargs={"seed": SEED},
        is_chat_model=True,
        context_window=1024,
        should_use_structured_outputs=True,  # response_format json_schema
        max_retries=0,
    )


@pytest.fixture(params=CLIENTS)
def llm(live: Serving, request: pytest.FixtureRequest) -> LLM:
    return make_llm(live, request.param)


def test_the_ollama_client_reads_the_context_window_from_show(live: Serving) -> None:
    shown = httpx.post(live.base + "/api/show", json={"model": MODEL}, timeout=10).json()
    context = next(v for k, v in shown["model_info"].items() if k.endswith(".context_length"))
    llm = make_llm(live, "ollama")
    assert llm.metadata.context_window == context  # it found `<arch>.context_length`
    assert llm.metadata.model_name == MODEL and llm.metadata.is_chat_model


def test_complete(llm: LLM) -> None:
    done = llm.complete("How do I open a file?")
    assert isinstance(done, CompletionResponse) and isinstance(done.text, str)
    if isinstance(llm, Ollama):
        raw = done.raw
        assert raw is not None and raw["done"] is True and raw["model"] == MODEL
        assert raw["done_reason"] in ("stop", "length")
        assert 0 < raw["usage"]["completion_tokens"] <= NUM_PREDICT
        assert raw["usage"]["prompt_tokens"] > 0
    else:
        assert isinstance(done.raw, ChatCompletion) and done.raw.model == MODEL
        assert done.raw.choices[0].finish_reason in ("stop", "length")
        assert done.raw.usage and 0 < done.raw.usage.completion_tokens <= NUM_PREDICT


def test_stream_chat_deltas_add_up_to_the_chat_reply(llm: LLM) -> None:
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="You are terse."),
        ChatMessage(role=MessageRole.USER, content="How do I open a file?"),
    ]
    whole = llm.chat(messages)
    assert whole.message.role == MessageRole.ASSISTANT
    parts = list(llm.stream_chat(messages))
    assert parts and all(p.message.role == MessageRole.ASSISTANT for p in parts)
    assert "".join(p.delta or "" for p in parts) == whole.message.content  # same seed
    assert parts[-1].message.content == whole.message.content  # each part carries the text so far
    last = parts[-1].raw
    if isinstance(llm, Ollama):
        assert last is not None and last["done"] is True
        assert last["done_reason"] in ("stop", "length")
        assert not any(p.raw and p.raw["done"] for p in parts[:-1])
    else:
        assert isinstance(last, ChatCompletionChunk)
        assert last.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("client", CLIENTS)
def test_structured_predict_returns_the_pydantic_class(live: Serving, client: str) -> None:
    llm = make_llm(live, client, num_predict=STRUCTURED_NUM_PREDICT)
    answer = llm.structured_predict(
        Answer, PromptTemplate("Which language opens {what}, and how?"), what="a file"
    )
    assert_is_an_answer(answer)
