"""The official `ollama` client's blob and create calls against the live server (`create` with
`messages`, `create_blob`, `adapters`). Apart from test_blobs.py, whose tests use the database
(pytest-django runs those first): this one uses only the live server, so it runs among the other
live tests, and the session-wide server it starts is not up while earlier live products run (a
Redis pub/sub channel layer is shared by every database of one Redis server)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import ollama
import pytest

from constellation.catalog import kernel_model_name
from constellation.engine.config import LoRAConfig, TrunkConfig
from constellation.engine.model import Adapter
from constellation.engine.tiny import ADAPTER_KERNEL
from tests.inference.conftest import Serving
from tests.inference.test_blobs import MODEL, digest_of, safetensors_of


@pytest.mark.live
@pytest.mark.timeout(120)
def test_the_ollama_client_creates_with_messages_and_brings_adapters(
    live: Serving, tmp_path: Path
) -> None:
    client = ollama.Client(host=live.ollama)
    name = f"keeper-{uuid.uuid4().hex[:8]}"
    messages = [
        {"role": "system", "content": "You keep the Vellmar archive."},
        {"role": "user", "content": "Who rings the orchard bell?"},
        {"role": "assistant", "content": "Keeper Ildra Fenwhistle, at dusk."},
    ]
    assert client.create(name, from_=MODEL, messages=messages).status == "success"
    assert "MESSAGE user Who rings the orchard bell?" in (client.show(name).modelfile or "")
    ask = [{"role": "user", "content": "And who trades salt?"}]
    options = {"num_predict": 1, "temperature": 0}
    bare = client.chat(MODEL, messages=ask, options=options)
    primed = client.chat(name, messages=ask, options=options)
    assert (primed.prompt_eval_count or 0) > (bare.prompt_eval_count or 0) + 20  # its messages

    garbage = tmp_path / "adapter.safetensors"
    garbage.write_bytes(b"not a tensor file at all " * 40)
    digest = client.create_blob(garbage)
    assert httpx.head(f"{live.ollama}/api/blobs/{digest}", timeout=10).status_code == 200
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB: past Django's in-memory body limit
    url = f"{live.ollama}/api/blobs/{digest_of(big)}"
    assert httpx.head(url, timeout=10).status_code == 404
    assert httpx.post(url, content=big, timeout=30).status_code == 201
    assert httpx.head(url, timeout=10).status_code == 200
    kernel_model = kernel_model_name(ADAPTER_KERNEL)
    with pytest.raises(ollama.ResponseError) as refused:
        client.create(f"{name}-lora", from_=kernel_model, adapters={garbage.name: digest})
    assert refused.value.status_code == 400 and "not a safetensors file" in refused.value.error
    # Shaped for the live trunk, but its kernel was trained by no job here: nothing to judge it
    # on. The refusal arrives as the stream's last line.
    trunk_json = live.log_path.parent / "models" / "trunk" / "trunk.json"  # the live data dir
    trunk = TrunkConfig(**json.loads(trunk_json.read_text()))
    shaped = tmp_path / "shaped.safetensors"
    shaped.write_bytes(safetensors_of(Adapter(trunk, LoRAConfig()).state_dict()))
    adapters = {shaped.name: client.create_blob(shaped)}
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.create(f"{name}-lora", from_=kernel_model, adapters=adapters, stream=True))
    assert "no data of its own" in streamed.value.error
    client.delete(name)
