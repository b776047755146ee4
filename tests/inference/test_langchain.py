"""LangChain's Ollama and OpenAI chat models against the live server: clients nobody here wrote,
used as their documentation shows, through `ChatOllama` (/api/chat) and `ChatOpenAI` (/v1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI

from tests.inference.answer import STRUCTURED_NUM_PREDICT, Answer, assert_is_an_answer
from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"
NUM_PREDICT = 12
SEED = 3
CLIENTS = ("ollama", "openai")


def chat_model(live: Serving, client: str, num_predict: int = NUM_PREDICT) -> BaseChatModel:
    """The same sampling through either client: a seed, so a stream and a whole reply agree."""
    if client == "ollama":
        return ChatOllama(
            model=MODEL, base_url=live.base, num_predict=num_predict, seed=SEED, temperature=0.8
        )
    return ChatOpenAI(
        model=MODEL,
        base_url=live.base + "/v1",
        api_key="unused-on-loopback",  # type: ignore[arg-type]
        max_completion_tokens=num_predict,
        seed=SEED,
        temperature=0.8,
        stream_usage=True,
        max_retries=0,  # a refusal must reach the test, not be retried
    )


@pytest.fixture(params=CLIENTS)
def llm(live: Serving, request: pytest.FixtureRequest) -> BaseChatModel:
    return chat_model(live, request.param)


def finish_reason(message: BaseMessage) -> str:
    """Why the reply ended, where each client keeps it."""
    meta = message.response_metadata
    return str(meta["done_reason"] if meta["model_provider"] == "ollama" else meta["finish_reason"])


def test_invoke_and_stream_agree(llm: BaseChatModel) -> None:
    whole = llm.invoke("How do I open a file?")
    assert isinstance(whole, AIMessage) and isinstance(whole.content, str)
    assert whole.response_metadata["model_name"] == MODEL
    assert finish_reason(whole) in ("stop", "length")
    assert whole.usage_metadata is not None
    assert 0 < whole.usage_metadata["output_tokens"] <= NUM_PREDICT
    assert whole.usage_metadata["input_tokens"] > 0
    assert whole.tool_calls == []

    chunks = list(llm.stream("How do I open a file?"))
    assert chunks and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(str(c.content) for c in chunks) == whole.content  # same seed, same text
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert finish_reason(merged) == finish_reason(whole)
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == whole.usage_metadata["output_tokens"]
    assert merged.usage_metadata["input_tokens"] == whole.usage_metadata["input_tokens"]


def test_batch_answers_each_prompt_in_order(llm: BaseChatModel) -> None:
    # The tiny model's text barely depends on the prompt; the prompt's length shows which is which.
    prompts: list[LanguageModelInput] = [
        "Files?",
        "How do I open a file?",
        "How do I open a file and read every line?",
    ]
    replies = llm.batch(prompts)
    assert len(replies) == 3 and all(isinstance(r, AIMessage) for r in replies)
    assert all(finish_reason(r) in ("stop", "length") for r in replies)
    used = [r.usage_metadata["input_tokens"] for r in replies if r.usage_metadata]
    assert len(used) == 3 and used == sorted(set(used)), used


def test_a_conversation_longer_than_the_context_is_truncated_not_refused(
    live: Serving, llm: BaseChatModel
) -> None:
    shown = httpx.post(live.base + "/api/show", json={"model": MODEL}, timeout=10).json()
    context = next(v for k, v in shown["model_info"].items() if k.endswith(".context_length"))
    turn = "Tell me again how the socket module opens a file and reads its lines. " * 6
    history: list[BaseMessage] = []
    prompt_tokens = []
    for _ in range(10):
        history.append(HumanMessage(turn))
        reply = llm.invoke(history)  # any status but 200 raises
        assert isinstance(reply, AIMessage) and reply.usage_metadata is not None
        used = reply.usage_metadata["input_tokens"] + reply.usage_metadata["output_tokens"]
        assert used <= context, (used, context)
        prompt_tokens.append(reply.usage_metadata["input_tokens"])
        history.append(reply)
    # Ten user turns alone are longer than the window: the history did outgrow it.
    assert 10 * prompt_tokens[0] > context, (prompt_tokens, context)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.mark.parametrize("client", CLIENTS)
def test_bind_tools_gets_a_call_that_langchain_parses(live: Serving, client: str) -> None:
    """OpenAI's `tool_choice` names the tool, so the reply is a call; Ollama has no
    `tool_choice` (the model chooses), so either a call or text, each well formed."""
    llm = chat_model(live, client, num_predict=STRUCTURED_NUM_PREDICT)
    bound = llm.bind_tools([add], tool_choice="add" if client == "openai" else None)
    reply = bound.invoke("What is 2 + 3?")
    assert isinstance(reply, AIMessage)
    if client == "openai":
        assert len(reply.tool_calls) == 1 and finish_reason(reply) == "tool_calls"
    for call in reply.tool_calls:  # LangChain parsed the arguments into the tool's fields
        # (its schema allows other properties too: no additionalProperties: false)
        a, b = call["args"]["a"], call["args"]["b"]
        assert call["name"] == "add" and isinstance(a, int) and isinstance(b, int)
        assert add.invoke({"a": a, "b": b}) == a + b
    if not reply.tool_calls:
        assert isinstance(reply.content, str) and not reply.content.startswith("<tool_call>")


@pytest.mark.parametrize("client", CLIENTS)
def test_structured_output_parses_into_the_schema(live: Serving, client: str) -> None:
    llm = chat_model(live, client, num_predict=STRUCTURED_NUM_PREDICT)
    structured = llm.with_structured_output(Answer, method="json_schema", include_raw=True)
    out: dict[str, Any] = structured.invoke("Which language opens a file, and how?")  # type: ignore[assignment]
    assert out["parsing_error"] is None, (out["parsing_error"], out["raw"].content)
    assert_is_an_answer(out["parsed"])
    assert finish_reason(out["raw"]) == "stop"  # the grammar ended the object, not the budget
