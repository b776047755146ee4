"""The official `ollama` Python client against the live server: every call, streamed and not."""

from __future__ import annotations

import uuid
from datetime import datetime

import ollama
import pytest

from constellation.engine.tiny import ADAPTER_KERNEL
from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"
SHORT = {"num_predict": 12, "seed": 3}


@pytest.fixture(scope="module")
def client(live: Serving) -> ollama.Client:
    return ollama.Client(host=live.base)


def test_it_lists_and_shows_the_models_truthfully(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {MODEL, "qig-constellation:minimal", "qig-constellation:medium"} <= names
    assert f"qig-kernel-{ADAPTER_KERNEL}-memory:latest" in names
    latest = next(m for m in client.list().models if m.model == MODEL)
    assert latest.details is not None
    assert latest.details.family == "qig" and latest.details.quantization_level in ("F32", "BF16")
    assert latest.details.parameter_size and latest.size and latest.size > 0
    shown = client.show(MODEL)
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "qig"
    assert shown.capabilities and "completion" in shown.capabilities
    assert isinstance(shown.modified_at, datetime)


def test_it_generates_streamed_and_not(client: ollama.Client) -> None:
    whole = client.generate(MODEL, "The socket module", options=SHORT)
    assert whole.done and whole.done_reason in ("stop", "length")
    assert whole.eval_count and whole.eval_count <= 12 and whole.total_duration
    assert whole.context
    parts = list(client.generate(MODEL, "The socket module", options=SHORT, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response or "" for p in parts) == whole.response  # same seed, same text


def test_it_chats_streamed_and_not(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "How do I open a file?"}]
    reply = client.chat(MODEL, messages=messages, options=SHORT)
    assert reply.message.role == "assistant" and reply.done
    chunks = list(client.chat(MODEL, messages=messages, options=SHORT, stream=True))
    assert all(c.message.role == "assistant" for c in chunks)
    assert "".join(c.message.content or "" for c in chunks) == reply.message.content


def test_a_pinned_kernel_and_a_preset_answer(client: ollama.Client) -> None:
    pinned = client.generate(f"qig-kernel-{ADAPTER_KERNEL}-memory", "hello", options=SHORT)
    assert pinned.done
    assert client.generate("qig-constellation:medium", "hello", options=SHORT).done


def test_it_embeds(client: ollama.Client) -> None:
    out = client.embed(MODEL, ["sockets and files", "poetry"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) == 64
    assert abs(sum(v * v for v in out.embeddings[0]) - 1) < 1e-6  # unit vectors
    assert len(client.embeddings(MODEL, "sockets").embedding) == 64
    assert list(client.embeddings(MODEL, "").embedding) == []


def test_it_loads_unloads_and_reports_what_is_loaded(client: ollama.Client) -> None:
    client.generate(MODEL, "hi", options=SHORT, keep_alive="10m")
    running = client.ps().models
    assert running and running[0].expires_at and running[0].context_length
    assert client.generate(MODEL, "", keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
    assert client.generate(MODEL, "").done_reason == "load"
    assert client.ps().models


def test_it_creates_copies_and_deletes_model_configs(client: ollama.Client) -> None:
    name = f"pirate-{uuid.uuid4().hex[:8]}"
    # The Python client ≥ 0.4 sends structured fields; a raw Modelfile goes in through HTTP
    # (tests/inference/test_http.py). Both end in the same config.
    progress = client.create(
        name, from_=MODEL, system="You are terse.", parameters={"temperature": 0}
    )
    assert progress.status == "success"
    shown = client.show(name)
    assert "You are terse." in (shown.modelfile or "") and "temperature 0" in (
        shown.parameters or ""
    )
    assert client.generate(name, "hello", options=SHORT).done
    client.copy(name, f"{name}-copy")
    assert f"{name}-copy:latest" in {m.model for m in client.list().models}
    client.delete(f"{name}-copy")
    client.delete(name)
    with pytest.raises(ollama.ResponseError) as missing:
        client.show(name)
    assert missing.value.status_code == 404


def test_errors_raise_response_error_with_the_status(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        client.generate("no-such-model", "hi")
    assert unknown.value.status_code == 404 and "not found" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat("no-such-model", messages=[{"role": "user", "content": "x"}], stream=True))
    assert streamed.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as bad_option:
        client.generate(MODEL, "hi", options={"temperature": "hot"})
    assert bad_option.value.status_code == 400
    # no registry: a model the node has is already pulled; any other is not found; no push
    assert client.pull(MODEL).status == "success"
    assert [part.status for part in client.pull(MODEL, stream=True)] == ["success"]
    for call, status in (
        (lambda: client.pull("elsewhere:7b"), 404),
        (lambda: client.push(MODEL), 400),
    ):
        with pytest.raises(ollama.ResponseError) as no_registry:
            call()
        assert no_registry.value.status_code == status and "registry" in no_registry.value.error
