"""Ollama-shaped endpoints (`/`, `/api/*`). Open on loopback like Ollama; behind QIG_API_KEY
beyond it. Thin: parse and check the request, call `serving.answer` (or `catalog`, `inference`
for the rest), shape the answer. Domain errors become `{"error": ...}` with Ollama's status codes
in `ollama_view`."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

import qigcenter
from constellation import catalog, creation, prompts, serving, tools
from constellation.errors import BadRequest, InferenceError, ModelNotFound
from constellation.inference import service
from constellation.interactions import Asked
from constellation.keep_alive import parse_keep_alive
from constellation.protocol import client_of, cut_dimensions, embedding_input, read_json
from constellation.published import model_files
from qigcenter.access import ollama_access

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


def now() -> str:
    return dt.datetime.now(tz=dt.UTC).isoformat()


def ollama_view(*methods: str) -> Callable[..., Any]:
    """CSRF-exempt, loopback-or-key guarded, method-checked, errors in Ollama's shape."""

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        async def handle(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return JsonResponse({"error": "method not allowed"}, status=405)
            try:
                response: HttpResponseBase = await view(request, *args, **kwargs)
                return response
            except InferenceError as exc:
                return JsonResponse({"error": exc.message}, status=exc.status)
            except Exception as exc:  # a bug: logged with its traceback, answered in JSON
                logger.exception("%s %s failed", request.method, request.path)
                return JsonResponse({"error": f"internal error: {exc}"}, status=500)

        return csrf_exempt(ollama_access(handle))

    return wrap


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"invalid value for field {name!r}: {json.dumps(value)[:80]}")
    return value


async def ndjson(lines: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """One JSON object per line; an error mid-stream ends it with an `{"error": ...}` line."""
    try:
        async for line in lines:
            yield (json.dumps(line) + "\n").encode()
    except InferenceError as exc:
        yield (json.dumps({"error": exc.message}) + "\n").encode()
    except Exception as exc:  # the status line is already sent: the error goes in the stream
        yield (json.dumps({"error": f"internal error: {exc}"}) + "\n").encode()


# ---- general -----------------------------------------------------------------------------------
@ollama_view("GET", "HEAD")
async def version(request: HttpRequest) -> JsonResponse:
    """`GET /api/version`: the product's version as plain dotted integers (Open WebUI parses it)."""
    return JsonResponse({"version": qigcenter.__version__})


@ollama_view("GET", "HEAD")
async def tags(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"models": await sync_to_async(catalog.tags)()})


@ollama_view("GET")
async def ps(request: HttpRequest) -> JsonResponse:
    loaded = service().ps()
    if loaded is None:
        return JsonResponse({"models": []})
    files = await sync_to_async(model_files)()
    expires = (
        catalog.iso(loaded.expires_at)
        if loaded.expires_at is not None
        else dt.datetime(2318, 1, 1, tzinfo=dt.UTC).isoformat()  # Ollama's "forever"
    )
    on_gpu = loaded.constellation.trunk.device.type == "cuda"
    entry = {
        "size": loaded.size_bytes,
        "details": catalog.details(files),
        "expires_at": expires,
        "size_vram": loaded.size_bytes if on_gpu else 0,
        "context_length": loaded.context_length,
    }
    names = [f"{catalog.CONSTELLATION}:{tag}" for tag in catalog.PRESET_TAGS]
    models = [
        {"name": n, "model": n, "digest": catalog.digest_of(n, files) if files else "", **entry}
        for n in names
    ]
    return JsonResponse({"models": models})


@ollama_view("POST")
async def show(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    name = body.get("model") or body.get("name")
    if not name:
        raise BadRequest("model is required")
    spec = await catalog.aresolve(name)
    return JsonResponse(await sync_to_async(catalog.show)(spec))


@ollama_view("POST")
async def create(request: HttpRequest) -> HttpResponseBase:
    """A model config (a Modelfile, or the JSON form); with `adapters`, a kernel's new adapter
    version, held to the promotion gate (constellation/creation.py). All is checked before the
    first byte; the gate runs while the status lines stream, and its refusal is 400 (`stream:
    false`) or the last line, with the figures it decided on in `heldout`."""
    body = read_json(request)
    stream = field(body, "stream", bool, True)
    planned = await sync_to_async(creation.plan)(body)
    if planned.offer is None or not stream:
        try:
            await sync_to_async(planned.make)()
        except creation.AdapterRefused as exc:
            return JsonResponse({"error": exc.message, "heldout": exc.figures}, status=400)
        if not stream:
            return JsonResponse({"status": "success"})
    return StreamingHttpResponse(ndjson(create_lines(planned)), content_type=NDJSON)


async def create_lines(planned: creation.Creation) -> AsyncIterator[dict[str, Any]]:
    """Ollama's status lines of a create; an adapter is judged between them (it takes a while)."""
    yield {"status": "parsing modelfile"}
    if planned.offer is None:  # made already
        yield {"status": "using existing layers"}
    else:
        yield {"status": "creating adapter layer"}
        try:
            verdict = await sync_to_async(planned.make)()
        except creation.AdapterRefused as exc:
            yield {"error": exc.message, "heldout": exc.figures}
            return
        if verdict is not None:
            yield {"status": f"kernel {planned.offer.kernel} promoted: {verdict.reason}"}
    yield {"status": "writing manifest"}
    yield {"status": "success"}


@ollama_view("POST")
async def copy(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    await sync_to_async(catalog.copy)(body.get("source"), body.get("destination"))
    return HttpResponse(status=200)


@ollama_view("DELETE")
async def delete(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    await sync_to_async(catalog.delete)(body.get("model") or body.get("name"))
    return HttpResponse(status=200)


@ollama_view("POST")
async def pull(request: HttpRequest) -> HttpResponseBase:
    """There is no registry: a model this node has is already "pulled" (clients such as Open WebUI
    pull before use), any other is not found."""
    body = read_json(request)
    name = body.get("model") or body.get("name")
    try:
        await catalog.aresolve(name)
    except ModelNotFound as exc:
        exc.message += (
            ": this node has no model registry to pull from; its models are trained locally "
            "(see /api/tags)"
        )
        raise
    if body.get("stream") is False:
        return JsonResponse({"status": "success"})
    return StreamingHttpResponse(iter([b'{"status": "success"}\n']), content_type=NDJSON)


@ollama_view("POST")
async def push(request: HttpRequest) -> JsonResponse:
    read_json(request)
    raise BadRequest(
        "push is not supported: this node has no model registry; share kernels through federation"
    )


# ---- generation --------------------------------------------------------------------------------
def final_stats(stats: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    )
    return {k: stats[k] for k in keys}


def content(text: str, chat: bool) -> dict[str, Any]:
    """A line's text: `message` for /api/chat, `response` for /api/generate."""
    return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}


async def _load_only(model: str, keep_alive: float | None, chat: bool) -> JsonResponse:
    reason = await service().load(keep_alive)
    body = {"model": model, "created_at": now(), "done": True, "done_reason": reason}
    return JsonResponse({**body, **content("", chat)})


async def answer_lines(
    answer: serving.Answer, chat: bool, context: bool
) -> AsyncIterator[dict[str, Any]]:
    """Ollama's lines of an answer: one per piece, the last with the outcome and the timings
    (and with `context`, the token ids that continue it)."""
    async for piece in answer.pieces():
        line = {"model": answer.spec.name, "created_at": now(), **content(piece.text, chat)}
        line["done"] = piece.done
        if piece.done:
            line["done_reason"] = piece.done_reason
            if context:
                line["context"] = answer.context()
            line.update(final_stats(piece.stats))
            line["route"] = piece.route  # this project's: who answered and why (clients ignore it)
        if piece.logprobs:
            line["logprobs"] = piece.logprobs
        yield line


async def respond(
    lines: AsyncIterator[dict[str, Any]], stream: bool, chat: bool
) -> HttpResponseBase:
    """The lines as NDJSON, or (`stream: false`) the last line with the whole text."""
    if stream:
        return StreamingHttpResponse(ndjson(lines), content_type=NDJSON)
    parts: list[str] = []
    last: dict[str, Any] = {}
    logprobs: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    async for line in lines:
        parts.append(line["message"]["content"] if chat else line["response"])
        calls += line["message"].get("tool_calls", []) if chat else []
        logprobs += line.get("logprobs", [])
        last = line
    whole = {**last, **content("".join(parts), chat)}
    if calls:
        whole["message"]["tool_calls"] = calls
    return JsonResponse({**whole, "logprobs": logprobs} if logprobs else whole)


@ollama_view("POST")
async def generate(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    spec = await catalog.aresolve(body.get("model", ""))
    for name in ("prompt", "suffix", "system", "template"):
        field(body, name, str)
    raw, stream = field(body, "raw", bool, False), field(body, "stream", bool, True)
    prompts.refuse_unsupported(spec, body, chat=False)
    context = field(body, "context", list, [])
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in context):
        raise BadRequest("invalid value for field 'context': expected a list of integers")
    if raw and (body.get("template") or body.get("system") or context):
        raise BadRequest("raw mode does not support template, system, or context")
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    sampling = prompts.sampling_options(spec, body.get("options"), body.get("format"))
    sampling = prompts.with_logprobs(sampling, body.get("logprobs"), body.get("top_logprobs"))
    if not body.get("prompt") and not context:
        return await _load_only(spec.name, keep_alive, chat=False)
    truncate = field(body, "truncate", bool, True)  # Ollama: cut the prompt to fit, unless false
    prompt = prompts.generate_prompt(spec, body)
    asked = Asked("generate", client_of(request, await request.auser()), prompt=prompt)
    answer = await serving.answer(spec, prompt, sampling, keep_alive, asked, context, truncate)
    return await respond(answer_lines(answer, chat=False, context=not raw), stream, chat=False)


@ollama_view("POST")
async def chat(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    if not body.get("model"):
        raise BadRequest("model is required")
    spec = await catalog.aresolve(body["model"])
    messages = prompts.check_messages(body.get("messages"))
    prompts.refuse_unsupported(spec, body)
    stream = field(body, "stream", bool, True)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    sampling = prompts.sampling_options(spec, body.get("options"), body.get("format"))
    sampling = prompts.with_logprobs(sampling, body.get("logprobs"), body.get("top_logprobs"))
    if not messages:
        return await _load_only(spec.name, keep_alive, chat=True)
    plan = tools.plan(body.get("tools"), body.get("tool_choice", "auto"))  # tool_choice: ours
    sampling, messages = prompts.with_tools(sampling, messages, plan)
    truncate = field(body, "truncate", bool, True)  # drop the oldest messages to fit, unless false
    client = client_of(request, await request.auser())
    answer = await serving.answer_chat(
        spec,
        messages,
        sampling,
        keep_alive,
        lambda kept: Asked("chat", client, messages=kept),
        truncate,
    )
    lines = answer_lines(answer, chat=True, context=False)
    return await respond(calls_of(lines) if plan else lines, stream, chat=True)


async def calls_of(lines: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """A chat offered tools: its text held while it may be a call; a call comes whole in a
    `done: false` line's `message.tool_calls` (`arguments` an object), then the done line."""
    held = tools.CallBuffer()
    async for line in lines:
        message = line["message"]
        if line["done"]:
            text, calls = held.finish()
            if calls:
                call = [{"function": calls[0]}]
                done = {k: v for k, v in line.items() if k in ("model", "created_at")}
                yield {**done, "message": {**message, "tool_calls": call}, "done": False}
            elif text:
                yield {**line, "done": False, "message": {**message, "content": text}}
            yield line
        elif out := held.feed(message["content"]):
            yield {**line, "message": {**message, "content": out}}


# ---- embeddings --------------------------------------------------------------------------------
@ollama_view("POST")
async def embed(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    spec = await catalog.aresolve(body.get("model", ""))
    texts = embedding_input(body.get("input"), "invalid input type", allow_empty=True)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    dimensions = field(body, "dimensions", int)
    field(body, "truncate", bool)  # accepted: a basin uses the whole input, no context limit
    started = dt.datetime.now()
    vectors, tokens, load_ns = await service().embed(texts, keep_alive)
    if dimensions is not None:
        vectors = cut_dimensions(vectors, dimensions)
    total = int((dt.datetime.now() - started).total_seconds() * 1e9)
    return JsonResponse(
        {
            "model": spec.name,
            "embeddings": vectors,
            "total_duration": total,
            "load_duration": load_ns,
            "prompt_eval_count": tokens,
        }
    )


@ollama_view("POST")
async def embeddings(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    await catalog.aresolve(body.get("model", ""))
    prompt = field(body, "prompt", str, "")
    if not prompt:
        return JsonResponse({"embedding": []})
    vectors, _, _ = await service().embed([prompt], parse_keep_alive(body.get("keep_alive")))
    return JsonResponse({"embedding": vectors[0]})
