"""Ollama-shaped endpoints (`/`, `/api/*`). Open on loopback like Ollama; behind QIG_API_KEY
beyond it. Thin: parse and check the request, call `serving`/`inference`, shape the answer.
Domain errors become `{"error": ...}` with Ollama's status codes in `ollama_view`."""

from __future__ import annotations

import datetime as dt
import functools
import json
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
from constellation import inference, serving
from constellation.inference import BadRequest, InferenceError
from qigcenter.access import ollama_access

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

        return csrf_exempt(ollama_access(handle))

    return wrap


def read_json(request: HttpRequest, required: bool = True) -> dict[str, Any]:
    if not request.body:
        if required:
            raise BadRequest("missing request body")
        return {}
    try:
        body = json.loads(request.body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("invalid request body: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid character in request body: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid request body: expected a JSON object")
    return body


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"invalid value for field {name!r}: {json.dumps(value)[:80]}")
    return value


def client_of(request: HttpRequest, user: Any) -> serving.Client:
    return serving.Client(
        user_id=user.pk if user is not None and user.is_authenticated else None,
        user_agent=request.headers.get("User-Agent", ""),
        remote_addr=request.META.get("REMOTE_ADDR", "") or "",
    )


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
    return JsonResponse({"models": await sync_to_async(serving.tags)()})


@ollama_view("GET")
async def ps(request: HttpRequest) -> JsonResponse:
    loaded = inference.service().ps()
    if loaded is None:
        return JsonResponse({"models": []})
    files = await sync_to_async(inference.model_files)()
    expires = (
        serving.iso(loaded.expires_at)
        if loaded.expires_at is not None
        else dt.datetime(2318, 1, 1, tzinfo=dt.UTC).isoformat()  # Ollama's "forever"
    )
    on_gpu = loaded.constellation.trunk.device.type == "cuda"
    entry = {
        "size": loaded.size_bytes,
        "digest": files.digest if files else "",
        "details": serving.details(files),
        "expires_at": expires,
        "size_vram": loaded.size_bytes if on_gpu else 0,
        "context_length": loaded.context_length,
    }
    names = [f"{serving.CONSTELLATION}:{tag}" for tag in serving.PRESET_TAGS]
    return JsonResponse({"models": [{"name": n, "model": n, **entry} for n in names]})


@ollama_view("POST")
async def show(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    name = body.get("model") or body.get("name")
    if not name:
        raise BadRequest("model is required")
    spec = await serving.aresolve(name)
    return JsonResponse(await sync_to_async(serving.show)(spec))


@ollama_view("POST")
async def create(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    name = body.get("model") or body.get("name")
    await sync_to_async(serving.create)(
        name,
        body.get("modelfile"),
        **{k: body.get(k) for k in ("from", "parameters", "system", "template")},
    )
    lines = [
        {"status": "using existing layers"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    if body.get("stream") is False:
        return JsonResponse({"status": "success"})
    return StreamingHttpResponse((json.dumps(line) + "\n" for line in lines), content_type=NDJSON)


@ollama_view("POST")
async def copy(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    await sync_to_async(serving.copy)(body.get("source"), body.get("destination"))
    return HttpResponse(status=200)


@ollama_view("DELETE")
async def delete(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    await sync_to_async(serving.delete)(body.get("model") or body.get("name"))
    return HttpResponse(status=200)


@ollama_view("POST")
async def pull(request: HttpRequest) -> JsonResponse:
    raise InferenceError(
        "pull is not supported: this node has no model registry; its models are trained "
        "locally (see /api/tags)"
    )


@ollama_view("POST")
async def push(request: HttpRequest) -> JsonResponse:
    raise InferenceError(
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


async def _load_only(model: str, keep_alive: float | None, chat: bool) -> JsonResponse:
    reason = await inference.service().load(keep_alive)
    body: dict[str, Any] = {
        "model": model,
        "created_at": now(),
        "done": True,
        "done_reason": reason,
    }
    if chat:
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    return JsonResponse(body)


@ollama_view("POST")
async def generate(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    spec = await serving.aresolve(body.get("model", ""))
    for name in ("prompt", "suffix", "system", "template"):
        field(body, name, str)
    raw, stream = field(body, "raw", bool, False), field(body, "stream", bool, True)
    context = field(body, "context", list, [])
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in context):
        raise BadRequest("invalid value for field 'context': expected a list of integers")
    if raw and (body.get("template") or body.get("system") or context):
        raise BadRequest("raw mode does not support template, system, or context")
    keep_alive = inference.parse_keep_alive(body.get("keep_alive"))
    opts, num_ctx = serving.sampling_options(spec, body.get("options"))
    if not body.get("prompt") and not context:
        return await _load_only(spec.name, keep_alive, chat=False)
    prompt = serving.generate_prompt(spec, body)
    gen = await inference.service().start(
        prompt, opts, keep_alive, spec.kernel, spec.preset, num_ctx, context
    )
    user = await request.auser()
    client = client_of(request, user)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        text = []
        async for piece in gen.pieces(reading=False):
            if not piece.done:
                text.append(piece.text)
                yield {
                    "model": spec.name,
                    "created_at": now(),
                    "response": piece.text,
                    "done": False,
                }
                continue
            final = {"model": spec.name, "created_at": now(), "response": "", "done": True}
            final["done_reason"] = piece.done_reason
            if not raw:
                final["context"] = gen.context()
            serving.record_after(gen, "generate", spec.name, client, "".join(text), piece, prompt)
            yield {**final, **final_stats(piece.stats)}

    return await respond(lines(), stream, "response")


async def respond(lines: AsyncIterator[dict[str, Any]], stream: bool, key: str) -> HttpResponseBase:
    if stream:
        return StreamingHttpResponse(ndjson(lines), content_type=NDJSON)
    parts: list[str] = []
    last: dict[str, Any] = {}
    async for line in lines:
        if key == "response":
            parts.append(line["response"])
        else:
            parts.append(line["message"]["content"])
        last = line
    if key == "response":
        last["response"] = "".join(parts)
    else:
        last["message"] = {"role": "assistant", "content": "".join(parts)}
    return JsonResponse(last)


@ollama_view("POST")
async def chat(request: HttpRequest) -> HttpResponseBase:
    body = read_json(request)
    if not body.get("model"):
        raise BadRequest("model is required")
    spec = await serving.aresolve(body["model"])
    messages = serving.check_messages(body.get("messages"))
    field(body, "tools", list)
    stream = field(body, "stream", bool, True)
    keep_alive = inference.parse_keep_alive(body.get("keep_alive"))
    opts, num_ctx = serving.sampling_options(spec, body.get("options"))
    if not messages:
        return await _load_only(spec.name, keep_alive, chat=True)
    prompt = serving.chat_prompt(spec, messages)
    gen = await inference.service().start(
        prompt, opts, keep_alive, spec.kernel, spec.preset, num_ctx
    )
    user = await request.auser()
    client = client_of(request, user)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        text = []
        async for piece in gen.pieces(reading=False):
            message = {"role": "assistant", "content": piece.text}
            if not piece.done:
                text.append(piece.text)
                yield {"model": spec.name, "created_at": now(), "message": message, "done": False}
                continue
            answer = "".join(text)
            serving.record_after(gen, "chat", spec.name, client, answer, piece, messages=messages)
            yield {
                "model": spec.name,
                "created_at": now(),
                "message": message,
                "done": True,
                "done_reason": piece.done_reason,
                **final_stats(piece.stats),
            }

    return await respond(lines(), stream, "message")


# ---- embeddings --------------------------------------------------------------------------------
@ollama_view("POST")
async def embed(request: HttpRequest) -> JsonResponse:
    body = read_json(request)
    spec = await serving.aresolve(body.get("model", ""))
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if texts is None:
        texts = []
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRequest("invalid input type")
    keep_alive = inference.parse_keep_alive(body.get("keep_alive"))
    started = dt.datetime.now()
    vectors, tokens, load_ns = await inference.service().embed(texts, keep_alive)
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
    await serving.aresolve(body.get("model", ""))
    prompt = field(body, "prompt", str, "")
    if not prompt:
        return JsonResponse({"embedding": []})
    vectors, _, _ = await inference.service().embed(
        [prompt], inference.parse_keep_alive(body.get("keep_alive"))
    )
    return JsonResponse({"embedding": vectors[0]})
