"""OpenAI-compatible endpoints (`/v1/*`) over the same service as the Ollama ones."""

from __future__ import annotations

import functools
import json
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

from constellation import inference, serving
from constellation.inference import BadRequest, Generation, InferenceError
from constellation.ollama_api import client_of, read_json
from qigcenter.access import ollama_access

ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def openai_error(message: str, status: int) -> JsonResponse:
    kind = ERROR_TYPES.get(status, "api_error")
    error = {"message": message, "type": kind, "param": None, "code": None}
    return JsonResponse({"error": error}, status=status)


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
                return openai_error(exc.message, exc.status)

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
    return "length" if done_reason == "length" else "stop"


async def _start(
    request: HttpRequest, body: dict[str, Any], prompt_of: Callable[[serving.ModelSpec], str]
) -> tuple[serving.ModelSpec, Generation, str]:
    spec = await serving.aresolve(body.get("model", ""))
    opts, num_ctx = serving.sampling_options(spec, options_of(body))
    prompt = prompt_of(spec)
    gen = await inference.service().start(
        prompt, opts, inference.DEFAULT_KEEP_ALIVE_S, spec.kernel, spec.preset, num_ctx
    )
    return spec, gen, prompt


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


@openai_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    messages = serving.check_messages(body.get("messages"))
    if not messages:
        raise BadRequest("[] is too short - 'messages'")
    spec, gen, _ = await _start(request, body, lambda s: serving.chat_prompt(s, messages))
    client = client_of(request, await request.auser())
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    base = {"id": ident, "created": created, "model": spec.name, "system_fingerprint": "fp_qig"}

    record = functools.partial(
        serving.record_after, gen, "openai.chat", spec.name, client, messages=messages
    )

    if not body.get("stream"):
        text, final = await gen.collect(reading=False)
        record(text, final)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(final.done_reason),
        }
        return JsonResponse(
            {**base, "object": "chat.completion", "choices": [choice], "usage": usage(final.stats)}
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events() -> AsyncIterator[dict[str, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}
        first, parts = True, list[str]()
        async for piece in gen.pieces(reading=False):
            if piece.done:
                record("".join(parts), piece)
                done = {"index": 0, "delta": {}, "finish_reason": finish_reason(piece.done_reason)}
                yield {**chunk, "choices": [done]}
                if include_usage:
                    yield {**chunk, "choices": [], "usage": usage(piece.stats)}
                return
            delta: dict[str, Any] = {"content": piece.text}
            if first:
                delta["role"], first = "assistant", False
            parts.append(piece.text)
            yield {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    return StreamingHttpResponse(sse(events()), content_type="text/event-stream")


@openai_view("POST")
async def completions(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("prompt: expected a string")
    spec, gen, _ = await _start(request, body, lambda s: prompt)
    client = client_of(request, await request.auser())
    base = {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": spec.name,
        "system_fingerprint": "fp_qig",
        "object": "text_completion",
    }

    record = functools.partial(
        serving.record_after, gen, "openai.completion", spec.name, client, prompt=prompt
    )

    if not body.get("stream"):
        text, final = await gen.collect(reading=False)
        record(text, final)
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish_reason(final.done_reason),
        }
        return JsonResponse({**base, "choices": [choice], "usage": usage(final.stats)})

    async def events() -> AsyncIterator[dict[str, Any]]:
        parts: list[str] = []
        async for piece in gen.pieces(reading=False):
            reason = finish_reason(piece.done_reason) if piece.done else None
            if piece.done:
                record("".join(parts), piece)
            parts.append(piece.text)
            choice = {"index": 0, "text": piece.text, "logprobs": None, "finish_reason": reason}
            yield {**base, "choices": [choice]}

    return StreamingHttpResponse(sse(events()), content_type="text/event-stream")


def model_entry(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "qig"}


@openai_view("GET")
async def models(request: HttpRequest) -> JsonResponse:
    entries = await sync_to_async(serving.tags)()
    created = int(time.time())
    return JsonResponse(
        {"object": "list", "data": [model_entry(e["name"], created) for e in entries]}
    )


@openai_view("GET")
async def model(request: HttpRequest, model_id: str) -> JsonResponse:
    spec = await serving.aresolve(model_id)
    if inference.model_files() is None:
        raise inference.ModelNotFound(model_id)
    return JsonResponse(model_entry(spec.name, int(time.time())))


@openai_view("POST")
async def embeddings(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    spec = await serving.aresolve(body.get("model", ""))
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("input: expected a string or a list of strings")
    vectors, tokens, _ = await inference.service().embed(texts, inference.DEFAULT_KEEP_ALIVE_S)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "model": spec.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
