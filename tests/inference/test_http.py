"""Raw HTTP against the live server, one test per line of the compatibility checklist."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from tests.inference.conftest import MAX_BATCH, MAX_QUEUE, Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def post(live: Serving, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(live.base + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def lines_of(response: httpx.Response) -> list[dict[str, object]]:
    text = response.text
    assert text.endswith("\n") and "\n\n" not in text and not text.startswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def test_root_is_ollama_on_the_ollama_listener_and_the_app_on_the_product_port(
    live: Serving,
) -> None:
    for method in ("GET", "HEAD"):
        answer = httpx.request(method, live.ollama + "/")
        assert answer.status_code == 200
        if method == "GET":
            assert answer.text == "Ollama is running"
    assert httpx.get(live.base + "/").text != "Ollama is running"
    version = httpx.get(live.ollama + "/api/version").json()["version"]
    assert all(part.isdigit() for part in version.split("."))
    assert httpx.get(live.ollama + "/api/tags").json()["models"]


def test_content_types_and_ndjson_lines(live: Serving) -> None:
    body = {"model": MODEL, "prompt": "hello", "options": {"num_predict": 6}}
    streamed = post(live, "/api/generate", json=body)  # stream missing means stream
    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = lines_of(streamed)
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "eval_count"):
        assert isinstance(final[key], int)
    whole = post(live, "/api/generate", json={**body, "stream": False})
    assert whole.headers["content-type"] == "application/json"
    chat = post(
        live,
        "/api/chat",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [],
            "stream": True,
            "options": {"num_predict": 4},
        },
    )
    chat_lines = lines_of(chat)
    assert chat_lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert "context" not in chat_lines[-1]
    sse = post(
        live,
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 4,
        },
    )
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/generate", b"{not json", 400, "invalid"),
        ("/api/generate", b"", 400, "missing request body"),
        ("/api/generate", '{"model": "x", "prompt": "\xff"}'.encode("latin-1"), 400, "UTF-8"),
        ("/api/generate", {"prompt": "hi"}, 404, "model '' not found"),
        ("/api/chat", {"messages": []}, 400, "model is required"),
        ("/api/generate", {"model": "nope", "prompt": "hi"}, 404, "model 'nope' not found"),
        ("/api/generate", {"model": MODEL, "prompt": 3}, 400, "prompt"),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "stream": "yes"}, 400, "stream"),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"top_k": "x"}},
            400,
            "top_k",
        ),
        ("/api/generate", {"model": MODEL, "prompt": "x", "raw": True, "system": "s"}, 400, "raw"),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "word " * 2000, "truncate": False},
            400,
            "context length",
        ),
        ("/api/generate", {"model": MODEL, "prompt": "x", "truncate": "no"}, 400, "truncate"),
        ("/api/chat", {"model": MODEL, "messages": "hi"}, 400, "messages"),
        ("/api/embed", {"model": MODEL, "input": 5}, 400, "input"),
        ("/api/show", {}, 400, "model is required"),
        ("/api/pull", {"model": "elsewhere:7b"}, 404, "no model registry"),
        ("/api/push", {"model": MODEL}, 400, "no model registry"),
        ("/api/generate", b"[1, 2]", 400, "JSON object"),
        ("/api/chat", '{"model": "x", "messages": "\xfe"}'.encode("latin-1"), 400, "UTF-8"),
        ("/api/chat", {"model": "nope", "messages": []}, 404, "model 'nope' not found"),
        ("/api/embed", {"model": "nope", "input": "x"}, 404, "model 'nope' not found"),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "options": "fast"}, 400, "options"),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"temperature": "hot"}},
            400,
            "temperature",
        ),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"num_ctx": "big"}},
            400,
            "num_ctx",
        ),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "hi", "keep_alive": "soon"},
            400,
            "keep_alive",
        ),
        ("/api/generate", {"model": MODEL, "context": ["a"]}, 400, "context"),
        # a seed past 64 bits once killed the scheduler's thread, and every request after it hung
        (
            "/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"seed": 2**70}},
            400,
            "seed",
        ),
        (
            "/api/generate",
            b'{"model": "%s", "prompt": "hi", "options": {"num_predict": 1e400}}' % MODEL.encode(),
            400,
            "num_predict",
        ),
        (
            "/api/generate",
            b'{"model": "%s", "prompt": "hi", "options": {"num_ctx": NaN}}' % MODEL.encode(),
            400,
            "num_ctx",
        ),
        (
            "/api/generate",
            b'{"model": "%s", "prompt": "hi", "options": {"temperature": Infinity}}'
            % MODEL.encode(),
            400,
            "temperature",
        ),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "context": [10**9]}, 400, "vocabulary"),
        (
            "/api/chat",
            {"model": MODEL, "messages": [{"role": "user", "content": 5}]},
            400,
            "content",
        ),
        (
            "/api/chat",
            {"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
            400,
            "role",
        ),
        (
            "/api/chat",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "word " * 2000}],
                "truncate": False,
            },
            400,
            "context length",
        ),
        ("/api/create", {"model": "x", "from": MODEL, "parameters": [1, 2]}, 400, "parameters"),
        ("/api/create", {"model": "x", "from": 7}, 400, "from"),
        ("/api/create", {"model": "../../evil", "from": MODEL}, 400, "invalid model name"),
        ("/api/create", {"model": "a" * 5000, "from": MODEL}, 400, "invalid model name"),
        ("/api/copy", {"source": MODEL, "destination": "/etc/x"}, 400, "invalid model name"),
        (
            "/api/generate",
            b'{"model": "%s", "prompt": "hi", "options": {"top_k": 1e400}}' % MODEL.encode(),
            400,
            "options.top_k: number 1e400 is out of range",
        ),
        (
            "/api/generate",
            b'{"model": "%s", "prompt": "hi", "keep_alive": NaN}' % MODEL.encode(),
            400,
            "keep_alive: NaN",
        ),
        (
            "/api/generate",
            b'{"model": "%s", "prompt": "hi", "options": {"repeat_last_n": %s}}'
            % (MODEL.encode(), b"9" * 5000),
            400,
            "options.repeat_last_n: integer",
        ),
        # what these models cannot do is refused as Ollama refuses it, never dropped
        (
            "/api/generate",
            {"model": MODEL, "prompt": "hi", "tools": [TOOL]},
            400,
            "tools: only a chat",
        ),
        (
            "/api/chat",
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "think": True},
            400,
            f"{MODEL} does not support thinking",
        ),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "think": "high"}, 400, "thinking"),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "think": "lots"}, 400, "'think'"),
    ],
)
def test_bad_input_gets_ollamas_status_and_error_shape(
    live: Serving, path: str, body: object, status: int, message: str
) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = post(live, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        *("/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show"),
        *("/api/create", "/api/copy", "/api/pull", "/api/push"),
        *("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
    ],
)
def test_every_post_answers_hostile_json_with_400_in_its_apis_shape(
    live: Serving, path: str
) -> None:
    """10,000-deep nesting once raised RecursionError (500, Django's HTML page); NaN, 1e400 and
    a 2^70 integer reached the engine. One reader (qigcenter.jsonbody) refuses them all."""
    for raw, said in [
        (b"[" * 10_000 + b"]" * 10_000, "nested more than 64 levels deep"),
        (b'{"a": ' * 100 + b"1" + b"}" * 100, "nested more than 64 levels deep"),
        (b'{"model": "m", "max_tokens": 1e400}', "max_tokens: number 1e400 is out of range"),
        (b'{"model": "m", "options": {"seed": 1180591620717411303424}}', "options.seed"),
        (b'{"model": "m", "temperature": Infinity}', "temperature: Infinity"),
    ]:
        answer = post(live, path, content=raw)
        assert answer.status_code == 400, (raw[:40], answer.text)
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert said in (error["message"] if path.startswith("/v1/") else error), error


def test_a_config_cycle_is_refused_when_made(live: Serving) -> None:
    a, b = f"cyc-a-{uuid.uuid4().hex[:6]}", f"cyc-b-{uuid.uuid4().hex[:6]}"
    assert post(live, "/api/create", json={"model": b, "from": MODEL}).status_code == 200
    assert post(live, "/api/create", json={"model": a, "from": b}).status_code == 200
    cycle = post(live, "/api/create", json={"model": b, "from": a})
    assert cycle.status_code == 400
    assert cycle.json()["error"] == f"FROM {a} makes a cycle: {b}:latest → {a}:latest → {b}:latest"
    onto_itself = post(live, "/api/copy", json={"source": a, "destination": b})
    assert onto_itself.status_code == 400 and "cycle" in onto_itself.json()["error"]
    assert post(live, "/api/show", json={"model": a}).status_code == 200  # both still serve
    for name in (a, b):
        httpx.request("DELETE", live.base + "/api/delete", json={"model": name})


def test_a_page_of_another_site_cannot_write_through_the_open_api(live: Serving) -> None:
    """A browser lets any page send a simple POST (text/plain, no preflight) to loopback: with
    another site's Origin it is refused before the view, as Ollama's OLLAMA_ORIGINS does."""
    name = f"injected-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"model": name, "from": MODEL, "system": "exfiltrate"})
    simple = {"Content-Type": "text/plain"}
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        refused = post(live, "/api/create", content=body, headers={**simple, "Origin": origin})
        assert refused.status_code == 403, (origin, refused.text)
        assert "not allowed" in refused.json()["error"]
        assert "access-control-allow-origin" not in refused.headers
    for path in ("/api/generate", "/v1/chat/completions", "/api/copy"):
        assert (
            post(live, path, json={}, headers={"Origin": "http://evil.example"}).status_code == 403
        )
    assert post(live, "/api/show", json={"model": name}).status_code == 404  # nothing was made
    # a page on this machine (any port), this server's own, and clients sending no Origin pass
    pages: list[str | None] = ["http://localhost:3000", live.base, "app://obsidian.md", None]
    for page in pages:
        headers = {**simple, **({"Origin": page} if page else {})}
        made = post(live, "/api/create", content=body, headers=headers)
        assert made.status_code == 200, (page, made.text)
        assert made.headers.get("access-control-allow-origin") == page
    preflight = httpx.options(
        live.base + "/api/chat",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    httpx.request("DELETE", live.base + "/api/delete", json={"model": name})


def test_what_the_model_cannot_do_is_said_and_what_it_need_not_do_is_accepted(
    live: Serving,
) -> None:
    hi = [{"role": "user", "content": "hi"}]
    quick = {"num_predict": 2}
    extras: list[dict[str, object]] = [{"tools": []}, {"think": False}]
    for extra in extras:
        body = {"model": MODEL, "messages": hi, "stream": False, "options": quick, **extra}
        assert post(live, "/api/chat", json=body).status_code == 200, extra
    v1 = {"model": MODEL, "messages": hi, "max_tokens": 2, "tools": [TOOL]}
    for choice in ("auto", "none"):  # tools: test_tools.py
        answered = post(live, "/v1/chat/completions", json={**v1, "tool_choice": choice})
        assert answered.status_code == 200, answered.text
    shown = post(live, "/api/show", json={"model": MODEL}).json()
    assert "tools" in shown["capabilities"] and "thinking" not in shown["capabilities"]


def test_newer_ollama_fields_digests_capabilities_and_dimensions(live: Serving) -> None:
    post(live, "/api/generate", json={"model": MODEL})  # loaded: /api/ps lists it
    tags = {m["name"]: m for m in httpx.get(live.base + "/api/tags").json()["models"]}
    running = httpx.get(live.base + "/api/ps").json()["models"]
    assert running and all(m["digest"] == tags[m["name"]]["digest"] for m in running)
    assert all(m["capabilities"] == ["completion", "tools", "embedding"] for m in tags.values())
    full = post(live, "/api/embed", json={"model": MODEL, "input": ["a socket", "a file"]})
    cut = post(live, "/api/embed", json={"model": MODEL, "input": ["a socket"], "dimensions": 8})
    vector = cut.json()["embeddings"][0]
    assert len(vector) == 8 and abs(sum(x * x for x in vector) - 1) < 1e-6
    head = full.json()["embeddings"][0][:8]
    norm = sum(x * x for x in head) ** 0.5
    assert all(abs(a - b / norm) < 1e-6 for a, b in zip(vector, head, strict=True))
    size = len(full.json()["embeddings"][0])
    for bad in (0, size + 1, "8"):
        refused = post(live, "/api/embed", json={"model": MODEL, "input": "x", "dimensions": bad})
        assert refused.status_code == 400 and "dimensions" in refused.json()["error"]
    v1 = post(live, "/v1/embeddings", json={"model": MODEL, "input": "a socket", "dimensions": 8})
    assert v1.json()["data"][0]["embedding"] == vector


def test_a_history_longer_than_the_context_is_cut_as_ollama_cuts_it(live: Serving) -> None:
    """Open WebUI sends the whole history every turn: past the context, the oldest messages go
    (the system prompt and the latest stay), and one message alone too long keeps its end."""
    shown = post(live, "/api/show", json={"model": MODEL}).json()
    window = int(shown["model_info"]["qig.context_length"])
    marker = uuid.uuid4().hex[:8]
    turns: list[dict[str, str]] = [{"role": "system", "content": f"system {marker}"}]
    for i in range(10):  # ten turns, together about three context windows
        words = max(10, window // 6)
        turns.append({"role": "user", "content": f"question {i} " + "sockets " * words})
        turns.append({"role": "assistant", "content": f"answer {i} " + "a socket " * words})
    turns.append({"role": "user", "content": f"the last question {marker}"})
    greedy = {"num_predict": 4, "temperature": 0}
    body = {"model": MODEL, "messages": turns, "stream": False, "options": greedy}
    chat = post(live, "/api/chat", json=body)
    assert chat.status_code == 200, chat.text
    assert chat.json()["done"] is True and chat.json()["prompt_eval_count"] < window
    kept = recorded_with(live, marker)["messages"]
    assert kept[0] == turns[0] and kept[-1] == turns[-1]  # the system prompt and the latest
    assert 2 <= len(kept) < len(turns) and kept[1:-1] == turns[len(turns) - len(kept) + 1 : -1]
    # /v1 cuts the same way; with "truncate": false it is OpenAI's error with its code
    v1 = {"model": MODEL, "messages": turns, "max_tokens": 4}
    assert post(live, "/v1/chat/completions", json=v1).status_code == 200
    refused = post(live, "/v1/chat/completions", json={**v1, "truncate": False})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    # one message alone too long: its end is kept, with room to answer
    too_long = "word " * (3 * window) + marker
    long = {"model": MODEL, "prompt": too_long, "stream": False, "options": greedy}
    cut = post(live, "/api/generate", json=long)
    assert cut.status_code == 200 and 0 < cut.json()["prompt_eval_count"] < window
    completion = {"model": MODEL, "prompt": too_long, "max_tokens": 4}
    assert post(live, "/v1/completions", json=completion).status_code == 200


def recorded_with(live: Serving, marker: str) -> dict:
    admin = live.signin()
    deadline = time.monotonic() + 10
    while True:
        rows = admin.get("/api/v1/interactions/", params={"page_size": 50}).json()["results"]
        for row in rows:
            if row["messages"] and marker in row["messages"][-1]["content"]:
                return row
        assert time.monotonic() < deadline, f"no interaction for {marker!r}"
        time.sleep(0.05)


def test_unknown_options_are_ignored(live: Serving) -> None:
    body = {
        "model": MODEL,
        "prompt": "hi",
        "stream": False,
        "options": {"num_predict": 3, "mirostat": 1, "low_vram": True},
    }
    assert post(live, "/api/generate", json=body).json()["done"] is True


def test_openai_errors_have_the_openai_shape(live: Serving) -> None:
    answer = post(live, "/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "message": answer.json()["error"]["message"],
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_a_modelfile_builds_a_config(live: Serving) -> None:
    name = f"terse-{uuid.uuid4().hex[:8]}"
    modelfile = (
        f"# comment\nFROM {MODEL}\nPARAMETER temperature 0\nPARAMETER stop ###\n"
        "PARAMETER stop END\nPARAMETER constellation_size medium\nPARAMETER mirostat 2\n"
        'SYSTEM """Be\nterse."""\nADAPTER memory\nLICENSE MIT\nMESSAGE user hello\n'
    )
    made = post(live, "/api/create", json={"model": name, "modelfile": modelfile})
    assert made.status_code == 200 and lines_of(made)[-1] == {"status": "success"}
    shown = post(live, "/api/show", json={"model": name}).json()
    assert shown["system"] == "Be\nterse." and "stop ###\nstop END" in shown["parameters"]
    assert shown["model_info"]["qig.constellation_size"] == "medium"
    bad = post(live, "/api/create", json={"model": name, "modelfile": "PARAMETER top_k 1\n"})
    assert bad.status_code == 400 and "FROM" in bad.json()["error"]
    assert (
        httpx.request("DELETE", live.base + "/api/delete", json={"model": name}).status_code == 200
    )


async def test_a_mid_stream_error_ends_the_stream_with_an_error_line(live: Serving) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as client:
        body = {"model": MODEL, "prompt": "a long answer", "options": {"num_predict": -1}}
        async with client.stream("POST", "/api/generate", json=body) as stream:
            assert stream.status_code == 200
            raw = b""
            chunks = stream.aiter_bytes()
            while b"\n" not in raw:
                raw += await anext(chunks)
            assert "response" in json.loads(raw.split(b"\n")[0])
            unload = await client.post("/api/generate", json={"model": MODEL, "keep_alive": 0})
            assert unload.json()["done_reason"] == "unload"
            raw += b"".join([chunk async for chunk in chunks])
    text = raw.decode()
    # NDJSON exactly: every line one JSON object, no blank line anywhere, a newline at the end
    assert text.endswith("\n") and "\n\n" not in text and not text.startswith("\n")
    lines = [json.loads(line) for line in text.split("\n")[:-1]]
    assert lines[-1] == {"error": "the model was unloaded while generating"}
    assert all("error" not in line for line in lines[:-1])


async def test_bad_input_leaves_everyone_else_served(live: Serving) -> None:
    """A stream in flight while a burst of bad requests arrives ends normally, and the next
    request is answered."""
    bad = [
        {"content": b"{not json"},
        {"content": '{"prompt": "\xff"}'.encode("latin-1")},
        {"json": {"model": "nope", "prompt": "hi"}},
        {"json": {"model": MODEL, "prompt": "word " * 2000, "truncate": False}},
        {"json": {"model": MODEL, "prompt": "hi", "options": {"top_k": "x"}}},
    ]
    greedy = {"temperature": 0, "repeat_penalty": 1.0}
    body = {"model": MODEL, "prompt": "the", "options": {"num_predict": 40, **greedy}}
    async with httpx.AsyncClient(base_url=live.base, timeout=60) as client:
        alone = await client.post("/api/generate", json={**body, "stream": False})
        async with client.stream("POST", "/api/generate", json=body) as stream:
            raw = b""
            chunks = stream.aiter_bytes()
            raw += await anext(chunks)
            answers = await asyncio.gather(
                *(client.post("/api/generate", **kind) for kind in bad * 4)  # type: ignore[arg-type]
            )
            raw += b"".join([chunk async for chunk in chunks])
        after = await client.post("/api/generate", json={**body, "stream": False})
    assert all(a.status_code in (400, 404) and set(a.json()) == {"error"} for a in answers)
    text = raw.decode()
    assert text.endswith("\n") and "\n\n" not in text
    lines = [json.loads(line) for line in text.split("\n")[:-1]]
    assert lines[-1]["done"] is True and all("error" not in line for line in lines)
    streamed = "".join(str(line["response"]) for line in lines)
    assert streamed == alone.json()["response"] == after.json()["response"]  # greedy


async def test_a_client_that_disconnects_frees_its_row(live: Serving) -> None:
    body = {"model": MODEL, "prompt": "go on", "options": {"num_predict": -1, "temperature": 0.9}}
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as client:
        await client.post("/api/generate", json={"model": MODEL})  # loaded before timing

        async def start_and_leave() -> None:
            async with client.stream("POST", "/api/generate", json=body) as stream:
                await anext(stream.aiter_lines())  # decoding; then the client goes away

        await asyncio.gather(*(start_and_leave() for _ in range(MAX_BATCH)))
        began = time.monotonic()
        quick = await client.post(
            "/api/generate",
            json={"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
        )
        waited = time.monotonic() - began
    assert quick.status_code == 200, quick.text
    # Had the 8 rows kept decoding to the 1024-token context, this would wait for one to end.
    assert waited < 1.0, waited


async def test_concurrent_streams_share_decode_steps_and_a_full_queue_answers_503(
    live: Serving,
) -> None:
    body = {
        "model": MODEL,
        "prompt": "the",
        "stream": False,
        # long enough that decoding, not each request's fixed cost, is what the timing compares
        "options": {
            "num_predict": 160,
            "ignore_eos": True,
            "temperature": 0,
            "repeat_penalty": 1.0,
        },
    }
    async with httpx.AsyncClient(base_url=live.base, timeout=60) as client:
        await client.post("/api/generate", json={"model": MODEL})

        async def one() -> httpx.Response:
            return await client.post("/api/generate", json=body)

        began = time.monotonic()
        alone = await one()
        single = time.monotonic() - began
        began = time.monotonic()
        together = await asyncio.gather(*(one() for _ in range(MAX_BATCH)))
        concurrent = time.monotonic() - began
        assert all(r.status_code == 200 for r in together)
        texts = {r.json()["response"] for r in together}
        assert texts == {alone.json()["response"]}  # greedy: batching changes nothing
        # Sharing decode steps: 8 streams take far less than 8 streams one after the other.
        assert concurrent < 0.5 * MAX_BATCH * single, (concurrent, single)

        overload = {**body, "options": {"num_predict": 200}}
        crowd = await asyncio.gather(
            *(client.post("/api/generate", json=overload) for _ in range(MAX_BATCH + MAX_QUEUE + 6))
        )
        statuses = [r.status_code for r in crowd]
        assert 503 in statuses and 200 in statuses
        busy = next(r for r in crowd if r.status_code == 503)
        assert "server busy" in busy.json()["error"]
