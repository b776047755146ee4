"""OpenAI-compatible endpoints (`/v1/*`) over the same service as the Ollama ones: each turns its
request into `serving.answer`'s terms and the answer into OpenAI's shapes. A completion's last
object carries one field of this project's, `route` (who answered and why), at the top level,
where OpenAI's clients keep unknown fields without complaint (the `openai` client's models
allow extra fields; vLLM adds its own the same way)."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import (
    HttpRequest,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

from constellation import catalog, prompts, serving, tools
from constellation.errors import BadRequest, ContextTooLong, InferenceError, ModelNotFound
from constellation.inference import service
from constellation.interactions import Asked
from constellation.keep_alive import DEFAULT_KEEP_ALIVE_S
from constellation.protocol import client_of, cut_dimensions, embedding_input, read_json
from constellation.published import model_files
from constellation.streaming import Piece
from qigcenter.access import ollama_access

logger = logging.getLogger(__name__)

ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def openai_error(message: str, status: int, code: str | None = None) -> JsonResponse:
    kind = ERROR_TYPES.get(status, "api_error")
    error = {"message": message, "type": kind, "param": None, "code": code}
    return JsonResponse({"error": error}, status=status)


def error_code(exc: InferenceError) -> str | None:
    """OpenAI's `code` for what clients act on (LangChain trims a history on the first)."""
    if isinstance(exc, ContextTooLong):
        return "context_length_exceeded"
    return "model_not_found" if isinstance(exc, ModelNotFound) else None


def openai_view(*methods: str) -> Callable[..., Any]:
    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        async def handle(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return openai_error("method not allowed", 405)
            try:
                response: HttpResponseBase = await view(request, *args, **kwargs)
                return response
            except InferenceError as exc:
                return openai_error(exc.message, exc.status, error_code(exc))
            except Exception as exc:  # a bug: logged with its traceback, answered in JSON
                logger.exception("%s %s failed", request.method, request.path)
                return openai_error(f"internal error: {exc}", 500)

        return csrf_exempt(ollama_access(handle))

    return wrap


def options_of(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's sampling fields as Ollama options."""
    mapping = {
        "temperature": "temperature",
        "top_p": "top_p",
        "max_tokens": "num_predict",
        "max_completion_tokens": "num_predict",
        "seed": "seed",
        "stop": "stop",
    }
    options = {"top_p": 1.0}
    for key, target in mapping.items():
        if body.get(key) is not None:
            options[target] = body[key]
    return options


def finish_reason(done_reason: str) -> str:
    return done_reason if done_reason in ("length", "tool_calls") else "stop"


async def _answer(
    request: HttpRequest,
    body: dict[str, Any],
    endpoint: str,
    prompt: str = "",
    messages: list[dict[str, Any]] | None = None,
    plan: tools.ToolPlan | None = None,
) -> serving.Answer:
    """Admit a completion, or a chat's `messages` (its interaction keeps them, else the prompt).
    Too long for the context, it is cut as Ollama's `/v1` does (a chat loses its oldest
    messages), unless the request says `"truncate": false` (this project's extension): then 400
    with OpenAI's code `context_length_exceeded`."""
    spec = await catalog.aresolve(body.get("model", ""))
    prompts.refuse_unsupported(spec, body, chat=endpoint == "openai.chat")
    sampling = prompts.sampling_options(spec, options_of(body))
    sampling = sampling._replace(schema=prompts.openai_format(body.get("response_format")))
    if endpoint == "openai.completion":  # the legacy form: logprobs is the number of alternatives
        top = body.get("logprobs")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top > 5):
            raise BadRequest("logprobs: expected an integer from 0 to 5")
        sampling = prompts.with_logprobs(sampling, top is not None, top)
    else:
        sampling = prompts.with_logprobs(sampling, body.get("logprobs"), body.get("top_logprobs"))
    client = client_of(request, await request.auser())
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise BadRequest("truncate: expected true or false")
    if messages:
        sampling, messages = prompts.with_tools(sampling, messages, plan)
        return await serving.answer_chat(
            spec,
            messages,
            sampling,
            DEFAULT_KEEP_ALIVE_S,
            lambda kept: Asked(endpoint, client, "", kept),
            truncate,
        )
    asked = Asked(endpoint, client, prompt)
    return await serving.answer(spec, prompt, sampling, DEFAULT_KEEP_ALIVE_S, asked, None, truncate)


def usage(stats: dict[str, Any]) -> dict[str, int]:
    p, c = stats["prompt_eval_count"], stats["eval_count"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


async def sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n".encode()
    except InferenceError as exc:
        error = {"message": exc.message, "type": "api_error", "param": None, "code": None}
        yield f"data: {json.dumps({'error': error})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def whole(base: dict[str, Any], final: Piece, **choice: Any) -> JsonResponse:
    """A non-streamed completion: its one choice, the usage and (this project's) the route."""
    choice = {"index": 0, **choice, "finish_reason": finish_reason(final.done_reason)}
    body = {**base, "choices": [choice], "usage": usage(final.stats), "route": final.route}
    return JsonResponse(body)


@openai_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    messages = prompts.check_messages(body.get("messages"))
    if not messages:
        raise BadRequest("[] is too short - 'messages'")
    plan = tools.plan(body.get("tools"), body.get("tool_choice", "auto"))
    answer = await _answer(request, body, "openai.chat", messages=messages, plan=plan)
    offered = plan is not None
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    base = {
        "id": ident,
        "created": created,
        "model": answer.spec.name,
        "system_fingerprint": "fp_qig",
    }
    if not body.get("stream"):
        text, final = await answer.collect()
        message: dict[str, Any] = {"role": "assistant", "content": text}
        calls = tools.parse(text) if offered else None
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": openai_calls(calls)}
            final.done_reason = "tool_calls"
        logprobs = chat_logprobs(final.logprobs)
        return whole(
            {**base, "object": "chat.completion"}, final, message=message, logprobs=logprobs
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events() -> AsyncIterator[dict[str, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}
        first = True
        held = tools.CallBuffer() if offered else None
        async for piece in answer.pieces():
            if held is not None and piece.done:  # a call comes whole, then the finish
                text, calls = held.finish()
                last: dict[str, Any] = (
                    {"tool_calls": openai_calls(calls)} if calls else {"content": text}
                )
                if first:
                    last["role"], first = "assistant", False
                if calls or text:
                    choice = {"index": 0, "delta": last, "finish_reason": None}
                    yield {**chunk, "choices": [choice]}
                piece.done_reason = "tool_calls" if calls else piece.done_reason
            elif held is not None:
                piece.text = held.feed(piece.text)
                if not piece.text:
                    continue
            if piece.done:
                done = {"index": 0, "delta": {}, "finish_reason": finish_reason(piece.done_reason)}
                yield {**chunk, "choices": [done], "route": piece.route}
                if include_usage:
                    yield {**chunk, "choices": [], "usage": usage(piece.stats)}
                return
            delta: dict[str, Any] = {"content": piece.text}
            if first:
                delta["role"], first = "assistant", False
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            if piece.logprobs is not None:
                choice["logprobs"] = chat_logprobs(piece.logprobs)
            yield {**chunk, "choices": [choice]}

    return StreamingHttpResponse(sse(events()), content_type="text/event-stream")


@openai_view("POST")
async def completions(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("prompt: expected a string")
    answer = await _answer(request, body, "openai.completion", prompt)
    base = {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": answer.spec.name,
        "system_fingerprint": "fp_qig",
        "object": "text_completion",
    }
    if not body.get("stream"):
        text, final = await answer.collect()
        return whole(base, final, text=text, logprobs=legacy_logprobs(final.logprobs, 0))

    async def events() -> AsyncIterator[dict[str, Any]]:
        offset = 0
        async for piece in answer.pieces():
            reason = finish_reason(piece.done_reason) if piece.done else None
            logprobs = legacy_logprobs(piece.logprobs, offset)
            offset += len(piece.text)
            choice = {"index": 0, "text": piece.text, "logprobs": logprobs, "finish_reason": reason}
            yield {**base, "choices": [choice], **({"route": piece.route} if piece.done else {})}

    return StreamingHttpResponse(sse(events()), content_type="text/event-stream")


def openai_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls in OpenAI's shape: an id each, `arguments` a JSON text."""
    return [
        {
            "index": i,
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
        }
        for i, c in enumerate(calls)
    ]


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """A chat choice's `logprobs`: OpenAI's entries are Ollama's ({token, logprob, bytes,
    top_logprobs})."""
    return None if entries is None else {"content": entries, "refusal": None}


def legacy_logprobs(entries: list[dict[str, Any]] | None, offset: int) -> dict[str, Any] | None:
    """A completion's `logprobs` in the legacy shape (tokens, token_logprobs, top_logprobs as
    {token: logprob}, text_offset: where each token starts, `offset` = the text before them)."""
    if entries is None:
        return None
    starts, at = [], offset
    for e in entries:
        starts.append(at)
        at += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
        "text_offset": starts,
    }


def model_entry(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "qig"}


@openai_view("GET")
async def models(request: HttpRequest) -> JsonResponse:
    entries = await sync_to_async(catalog.tags)()
    created = int(time.time())
    return JsonResponse(
        {"object": "list", "data": [model_entry(e["name"], created) for e in entries]}
    )


@openai_view("GET")
async def model(request: HttpRequest, model_id: str) -> JsonResponse:
    spec = await catalog.aresolve(model_id)
    if model_files() is None:
        raise ModelNotFound(model_id)
    return JsonResponse(model_entry(spec.name, int(time.time())))


@openai_view("POST")
async def embeddings(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    spec = await catalog.aresolve(body.get("model", ""))
    error = "input: expected a string or a list of strings"
    texts = embedding_input(body.get("input"), error, allow_empty=False)
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
        raise BadRequest("dimensions: expected an integer")
    vectors, tokens, _ = await service().embed(texts, DEFAULT_KEEP_ALIVE_S)
    if dimensions is not None:
        vectors = cut_dimensions(vectors, dimensions)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "model": spec.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
