"""Ollama's blob API and the JSON form of `/api/create`: blobs stored whole under their sha256,
`messages` a model starts every chat with, and `adapters` — a LoRA a client brings for a kernel,
refused when it does not fit this node's trunk and held to the promotion gate an adapter job's
version passes (learning/adapter_gate.py). In process with Django's async client on a tiny trunk
pretrained on the CPU and a kernel trained by a real adapter job; the official `ollama` client
against the live server."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile
from django.http import HttpResponseBase
from django.test import AsyncClient
from safetensors.torch import save

from constellation import blobs, published
from constellation.catalog import kernel_model_name
from constellation.engine import (
    Adapter,
    LoRAConfig,
    TokenStream,
    TrainConfig,
    Trainer,
    Trunk,
    save_trunk,
    trunk_preset,
)
from constellation.models import ModelConfig
from constellation.services import ensure_kernels
from learning import runner, services
from learning.datasets import job_split, token_stream
from learning.models import FineTuneJob, JobKind, JobStatus, LearningEvent, LearningEventKind
from tests.learning import tiny
from uploads.models import KnowledgeFile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

KERNEL = 9
TRAIN = {**tiny.FAST_PRETRAIN, "steps": 40}
MODEL = "qig-constellation:latest"


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def upload(client: AsyncClient, data: bytes, digest: str | None = None) -> Any:
    path = f"/api/blobs/{digest or digest_of(data)}"
    return await client.post(path, data, content_type="application/octet-stream")


async def create(client: AsyncClient, body: dict[str, Any]) -> Any:
    return await client.post("/api/create", json.dumps(body), content_type="application/json")


async def lines_of(response: HttpResponseBase) -> list[dict[str, Any]]:
    assert response["Content-Type"] == "application/x-ndjson"
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()  # type: ignore[attr-defined]
    assert text.endswith("\n") and "\n\n" not in text
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def store(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    settings.API_KEY_REQUIRED = False  # the server binds loopback only (the default)
    return tmp_path / "blobs"


# ---- blobs --------------------------------------------------------------------------------------
async def test_a_blob_is_there_once_uploaded_whole_under_its_digest(store: Path) -> None:
    client, data = AsyncClient(), b"\x00\x01 the blob's bytes \xff" * 1000
    digest = digest_of(data)
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
    assert (await upload(client, data)).status_code == 201
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 200
    assert (await client.head(f"/api/blobs/{digest.replace(':', '-').upper()}")).status_code == 400
    assert (await client.head(f"/api/blobs/{digest.replace(':', '-')}")).status_code == 200
    assert blobs.blob_path(digest).read_bytes() == data
    assert (await upload(client, data)).status_code == 200  # there already: Ollama's 200
    assert sorted(p.name for p in store.iterdir()) == [digest.replace(":", "-")]  # no temp file
    assert (await client.get(f"/api/blobs/{digest}")).status_code == 405


async def test_a_blob_whose_sha256_is_not_its_digest_is_refused_and_not_kept(store: Path) -> None:
    client, data = AsyncClient(), b"what was sent"
    claimed = digest_of(b"what was meant")
    refused = await upload(client, data, claimed)
    assert refused.status_code == 400
    assert refused.json()["error"] == f"digest mismatch: expected {claimed}, got {digest_of(data)}"
    assert (await client.head(f"/api/blobs/{claimed}")).status_code == 404
    assert list(store.iterdir()) == []


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", f"md5:{'0' * 64}", f"sha256:{'g' * 64}", f"sha256:{'0' * 65}", "0" * 64],
)
async def test_a_malformed_digest_is_refused(store: Path, digest: str) -> None:
    client = AsyncClient()
    for response in (await upload(client, b"x", digest), await client.head(f"/api/blobs/{digest}")):
        assert response.status_code == 400
    assert "expected sha256:<64 hex digits>" in (await upload(client, b"x", digest)).json()["error"]


async def test_a_blob_past_the_limit_is_refused_with_413(store: Path, settings: Any) -> None:
    settings.BLOB_MAX_BYTES = 1000
    client = AsyncClient()
    too_big = await upload(client, b"x" * 1001)
    assert too_big.status_code == 413
    assert "QIG_BLOB_MAX_BYTES" in too_big.json()["error"] and "1,000" in too_big.json()["error"]
    assert (await upload(client, b"x" * 1000)).status_code == 201
    # A body that declares no length is counted as it streams in, and dropped past the limit.
    with pytest.raises(blobs.BlobTooLarge):
        blobs.store(digest_of(b"y" * 1001), io.BytesIO(b"y" * 1001), None)
    assert [p.name for p in store.iterdir()] == [digest_of(b"x" * 1000).replace(":", "-")]


# ---- create: messages ---------------------------------------------------------------------------
async def test_messages_are_stored_on_the_model_as_modelfile_messages(store: Path) -> None:
    client = AsyncClient()
    messages = [
        {"role": "user", "content": "Who keeps the orchard?"},
        {"role": "assistant", "content": "Ildra Fenwhistle.\nShe rings the bell at dusk."},
    ]
    made = await create(client, {"model": "keeper", "from": MODEL, "messages": messages})
    assert [line["status"] for line in await lines_of(made)] == [
        "parsing modelfile",
        "using existing layers",
        "writing manifest",
        "success",
    ]
    config = await ModelConfig.objects.aget(name="keeper:latest")
    assert config.messages == messages
    assert 'MESSAGE assistant """Ildra Fenwhistle.\nShe rings' in config.modelfile
    again = {"model": "keeper2", "modelfile": config.modelfile, "stream": False}
    assert (await create(client, again)).status_code == 200
    assert (await ModelConfig.objects.aget(name="keeper2:latest")).messages == messages
    for bad, why in (
        ([{"role": "tool", "content": "x"}], "invalid role 'tool'"),
        ([{"role": "user", "content": 5}], "content must be a string"),
        ("hello", "expected a list of objects"),
    ):
        body = {"model": "bad", "from": MODEL, "messages": bad, "stream": False}
        refused = await create(client, body)
        assert refused.status_code == 400 and why in refused.json()["error"]


# ---- create: adapters ---------------------------------------------------------------------------
@pytest.fixture
def node(store: Path, settings: Any, tmp_path: Path) -> Path:
    """A node with the tiny coordizer, the tiny corpus as its bootstrap corpus and a trunk
    pretrained on it (as tests/learning/test_promotion.py's)."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    settings.MEDIA_ROOT = str(tmp_path / "uploads")
    settings.TRAIN_DEVICE = "cpu"
    settings.TRAIN_THREADS = 1
    torch.set_num_threads(1)
    tiny.save_coordizer(settings.MODELS_DIR)
    coordizer = tiny.coordizer()
    stream = TokenStream.from_examples(list(tiny.corpus()), coordizer.encode, coordizer.eot_id)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coordizer.vocab_size))
    config = TrainConfig(steps=150, batch_size=4, seq_len=32, lr=3e-3, metrics_every=1000)
    Trainer(trunk, config, stream).fit()
    save_trunk(trunk, settings.MODELS_DIR / "trunk")
    ensure_kernels()
    return Path(settings.MODELS_DIR)


@pytest.fixture
def trained(node: Path) -> FineTuneJob:
    """Kernel KERNEL trained by an adapter job on notes (promoted: its own data is theirs)."""
    data = "\n\n".join(tiny.corpus()[:40]).encode()
    knowledge = KnowledgeFile(
        original_name="notes.txt", sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
    )
    knowledge.file.save("notes.txt", ContentFile(data))
    job = services.queue_job(
        kind=JobKind.ADAPTER,
        created_by=None,
        hyperparameters=TRAIN,
        target_kernels=[KERNEL],
        dataset_ids=[knowledge.pk],
    )
    assert runner.run_next_job("test@host:1") == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.evaluation["promoted"] == [KERNEL], job.error
    return job


def trained_further(job: FineTuneJob) -> Adapter:
    """The version the kernel serves, trained on for more steps on its job's training data."""
    coordizer, trunk = published.load_coordizer(), published.load_trunk()
    adapter, _ = published.load_adapter(KERNEL)
    stream = token_stream(job_split(job).held_in, coordizer)
    torch.manual_seed(1)
    more = TrainConfig(
        mode="adapter", steps=150, batch_size=2, seq_len=32, lr=3e-3, metrics_every=1000
    )
    Trainer(trunk, more, stream, adapter=adapter, kernel=KERNEL).fit()
    return adapter


def safetensors_of(tensors: dict[str, torch.Tensor], **metadata: str) -> bytes:
    return save({k: v.detach().contiguous() for k, v in tensors.items()}, metadata or None)


async def test_an_adapter_that_does_better_on_its_kernels_own_data_becomes_its_version(
    trained: FineTuneJob,
) -> None:
    client = AsyncClient()
    served = published.kernel_dir(KERNEL).resolve()
    better = await sync_to_async(trained_further)(trained)
    data = safetensors_of(better.state_dict())
    assert (await upload(client, data)).status_code == 201
    body = {
        "model": "notes-expert",
        "from": kernel_model_name(KERNEL),
        "adapters": {"adapter.safetensors": digest_of(data)},
        "messages": [{"role": "user", "content": "What are these notes?"}],
    }
    lines = await lines_of(await create(client, body))
    statuses = [line.get("status", "") for line in lines]
    assert statuses[:2] == ["parsing modelfile", "creating adapter layer"], lines
    assert statuses[2].startswith(f"kernel {KERNEL} promoted: held-out loss"), lines
    assert statuses[3:] == ["writing manifest", "success"]
    # The kernel serves it now: a new version, with its figures and where it came from.
    version = published.kernel_dir(KERNEL).resolve()
    assert version != served and len(published.versions(published.kernel_dir(KERNEL))) == 2
    meta = published.kernel_meta(KERNEL)
    assert meta is not None and meta["job"] is None and meta["own_jobs"] == [trained.pk]
    assert meta["source"]["digest"] == digest_of(data) and meta["radius"] > 0
    figures = meta["heldout"]
    assert figures["own_after"] < figures["own_before"] and figures["own_is_heldout"]
    loaded, _ = published.load_adapter(KERNEL)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in better.state_dict().items())
    config = await ModelConfig.objects.aget(name="notes-expert:latest")
    assert config.adapter_kernel == KERNEL and f"ADAPTER {KERNEL}" in config.modelfile
    assert len(config.messages) == 1
    event = await LearningEvent.objects.aget(kind=LearningEventKind.PROMOTED, job__isnull=True)
    assert event.kernel_index == KERNEL and digest_of(data) in event.message
    # The kernel's own data is still the job's: the next adapter is judged on it too.
    again = await create(client, {**body, "model": "again", "stream": False})
    assert again.status_code == 400 and "did not improve" in again.json()["error"]


async def test_an_adapter_the_gate_refuses_is_a_400_with_its_figures_and_changes_nothing(
    trained: FineTuneJob,
) -> None:
    client = AsyncClient()
    served, meta = published.kernel_dir(KERNEL).resolve(), published.kernel_meta(KERNEL)
    trunk_cfg = published.trunk_config()
    assert trunk_cfg is not None
    data = safetensors_of(Adapter(trunk_cfg, LoRAConfig()).state_dict())  # B = 0: the bare trunk
    assert (await upload(client, data)).status_code == 201
    body = {
        "model": "bare",
        "from": kernel_model_name(KERNEL),
        "adapters": {"adapter.safetensors": digest_of(data)},
    }
    refused = await create(client, {**body, "stream": False})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error.startswith(f"kernel {KERNEL}'s promotion gate refused the adapter: its held-out")
    assert "did not improve" in error
    figures = refused.json()["heldout"]
    assert figures["own_after"] > figures["own_before"] and figures["general_chunks"] > 0
    streamed = await lines_of(await create(client, body))
    assert [line.get("status") for line in streamed[:2]] == [
        "parsing modelfile",
        "creating adapter layer",
    ]
    assert streamed[2]["error"] == error and streamed[2]["heldout"] == figures
    assert len(streamed) == 3
    assert published.kernel_dir(KERNEL).resolve() == served
    assert published.kernel_meta(KERNEL) == meta
    assert not await ModelConfig.objects.filter(name="bare:latest").aexists()
    kept = LearningEvent.objects.filter(kind=LearningEventKind.NOT_PROMOTED, job__isnull=True)
    assert await kept.acount() == 2


async def test_an_adapter_that_does_not_fit_is_refused_with_the_reason(node: Path) -> None:
    client = AsyncClient()
    trunk_cfg = published.trunk_config()
    assert trunk_cfg is not None
    good = Adapter(trunk_cfg, LoRAConfig(), seed=1).state_dict()
    wrong_rank = {**good, "a.1_o": torch.zeros(trunk_cfg.hidden, 9)}
    nan = {**good, "b.0_qkv": torch.full_like(good["b.0_qkv"], float("nan"))}
    deeper = replace(trunk_cfg, n_layers=trunk_cfg.n_layers + 1)
    peft = {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 4)}
    cases: list[tuple[bytes | str, str]] = [
        (b"GGUF and then some bytes that are not safetensors", "not a safetensors file"),
        (safetensors_of(wrong_rank), "tensor 'a.1_o' has shape"),
        (safetensors_of(nan), "tensor 'b.0_qkv' holds non-finite values"),
        (safetensors_of(Adapter(deeper, LoRAConfig()).state_dict()), "each needs them"),
        (safetensors_of(peft), "is not a LoRA tensor of this engine"),
        (safetensors_of(good, lora_alpha="lots"), "lora_alpha"),
        (digest_of(b"never uploaded"), "not found: upload it first"),
    ]
    for blob, why in cases:
        if isinstance(blob, bytes):
            assert (await upload(client, blob)).status_code in (200, 201)
        digest = blob if isinstance(blob, str) else digest_of(blob)
        body = {
            "model": "misfit",
            "from": kernel_model_name(KERNEL),
            "adapters": {"adapter.safetensors": digest},
        }
        refused = await create(client, body)  # refused before the first byte, streamed or not
        assert refused.status_code == 400, (why, refused.content)
        assert why in refused.json()["error"], refused.json()
    fits = safetensors_of(good)
    await upload(client, fits)
    adapters = {"adapter.safetensors": digest_of(fits)}
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"from": MODEL, "adapters": adapters}, "is not a kernel's model"),
        ({"from": MODEL, "adapters": {**adapters, "b": digest_of(fits)}}, "one safetensors file"),
        ({"from": MODEL, "adapters": ["adapter.safetensors"]}, "one safetensors file"),
        ({"from": MODEL, "files": {"model.gguf": digest_of(fits)}}, "does not import model"),
        # a kernel no adapter job trained has no own data to measure an adapter on
        ({"from": kernel_model_name(KERNEL), "adapters": adapters}, "no data of its own"),
    ]
    for fields, why in refusals:
        refused = await create(client, {"model": "misfit", **fields, "stream": False})
        assert refused.status_code == 400 and why in refused.json()["error"], refused.json()
    assert not await ModelConfig.objects.filter(name="misfit:latest").aexists()
    assert not published.kernel_dir(KERNEL).exists()
