"""Routing does no harm (issue 12, items 1 and 8), in-process through the real Ollama views with
a tiny model trained here on the CPU: a kernel that learned a distinctive document answers
questions about it (held-out passages of three sentences), within the radius calibrated by hand as
a promotion does it (docs/inference.md, "Routing"); unrelated one-line prompts (docstring
openings the tiny coordizer never saw, as in the issue) are answered by the trunk, word for word
as before the kernel learned anything, and say why; a pinned kernel model is unchanged; a rollback
brings back the previous version's radius. (One-sentence questions: see the measurement in
docs/inference.md — the tiny coordizer does not separate them.)"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from constellation import interactions, published
from constellation.engine import (
    Adapter,
    LoRAConfig,
    TokenStream,
    TrainConfig,
    Trainer,
    e8,
    load_trunk,
)
from constellation.engine.corpus import CorpusConfig, build_corpus
from constellation.engine.geometry import fisher_rao
from constellation.engine.router import Router, calibrate_radius
from constellation.engine.tiny import CORPUS_BYTES, corpus, make_trained_model
from constellation.inference import service
from constellation.models import Interaction, Kernel, KernelStatus
from constellation.services import ensure_kernels

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

HARBOR = (
    ["Quillmere", "The zorblax lantern", "Old Maribeth Vantorre", "The copper heron"],
    ["glimmers above", "sings softly to", "drifts toward", "remembers", "guards"],
    ["the salt marsh at dusk", "seven brass bells", "a ledger of tides", "the heron's nest"],
)
GREEDY = {"temperature": 0, "num_predict": 8, "seed": 1}
LATEST = "qig-constellation:latest"


def phrases(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    names, verbs, objects = HARBOR
    return [f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(n)]


def passages(seed: int, n: int, sentences: int = 3) -> list[str]:
    """n questions about the document: held-out passages of a few of its sentences."""
    lines = phrases(seed, n * sentences)
    return [" ".join(lines[i : i + sentences]) for i in range(0, len(lines), sentences)]


def openings(count: int) -> list[str]:
    """Docstring-like one-line prompts: the first line of at least four words of bootstrap-corpus
    documents beyond the tiny coordizer's (the unrelated text)."""
    found = []
    unseen = build_corpus(CorpusConfig(max_bytes=CORPUS_BYTES * 4))[len(corpus()) :]
    for doc in unseen:
        line = next((x.strip() for x in doc.splitlines() if len(x.split()) >= 4), "")
        if line and len(line) < 200:
            found.append(line)
    assert len(found) >= count, f"only {len(found)} unrelated prompts"
    return found[:count]


UNRELATED = [
    "Return the number of elements in the list.",
    "How do I open a socket and read from it?",
    "Split a string on commas and strip the spaces.",
    "What does the garbage collector do with cycles?",
    "Write a function that sorts a dictionary by value.",
]


def pinned_name(kernel: int) -> str:
    return f"qig-kernel-{kernel}-{e8.role_of(kernel).value.lower()}"


def as_chat(text: str) -> str:
    return f"user: {text}\nassistant:"  # constellation.prompts.chat_prompt of one message


@pytest.fixture(autouse=True)
async def recorded() -> AsyncIterator[None]:
    """Each test's interactions are stored before its event loop closes (see `drain`)."""
    yield
    await interactions.drain()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny coordizer and pretrained trunk (made once), no kernel adapter."""
    made = make_trained_model(tmp_path_factory.mktemp("routing"))
    shutil.rmtree(made / "kernels")  # the tiny model's own adapter: not this story
    return made


@pytest.fixture
def models(settings, tmp_path: Path, trained: Path) -> Iterator[Path]:
    settings.MODELS_DIR = tmp_path / "models"
    shutil.copytree(trained, settings.MODELS_DIR)
    ensure_kernels()
    yield settings.MODELS_DIR
    service().unload()


async def chat(client: AsyncClient, model: str, text: str) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": False,
        "options": GREEDY,
    }
    response = await client.post("/api/chat", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    data: dict[str, Any] = response.json()
    return data


def learn(models: Path, document: list[str], held: list[str], unrelated: list[str]) -> int:
    """An adapter job and its promotion, by hand: train the nearest kernel on the document, move
    its anchor, calibrate its radius from held-out passages vs unrelated prompts, publish."""
    coordizer = published.load_coordizer()
    trunk = load_trunk(models / "trunk")
    stream = TokenStream.from_examples([" ".join(document)], coordizer.encode, coordizer.eot_id)
    data_basin = coordizer.basin_of_ids(stream.ids.tolist())
    kernel = int(Router(dict(enumerate(e8.anchors()))).route_basins(data_basin, 1)[0][0, 0])
    adapter = Adapter(trunk.cfg, LoRAConfig(), seed=kernel)
    cfg = TrainConfig(mode="adapter", steps=30, batch_size=4, seq_len=32, metrics_every=1000)
    torch.manual_seed(0)
    result = Trainer(
        trunk,
        cfg,
        stream,
        adapter=adapter,
        kernel=kernel,
        anchor=e8.anchor(kernel),
        data_basin=data_basin,
    ).fit()
    assert result.anchor_update is not None
    anchor = np.array(result.anchor_update.after)
    own = fisher_rao(coordizer.text_basins([as_chat(p) for p in held]), anchor)
    far = fisher_rao(coordizer.text_basins([as_chat(p) for p in unrelated]), anchor)
    radius = calibrate_radius(own, far)
    meta = {"radius": radius, "anchor": anchor.tolist()}
    published.publish_adapter(kernel, adapter, trunk.cfg, meta)
    Kernel.objects.filter(index=kernel).update(
        status=KernelStatus.ACTIVE,
        anchor=anchor.tolist(),
        adapter_path=str(published.kernel_dir(kernel)),
    )
    return kernel


async def test_a_learned_document_routes_to_its_kernel_and_nothing_else_does(
    models: Path,
) -> None:
    client = AsyncClient()
    found = openings(235)
    calibration, unrelated = found[:200], UNRELATED + found[200:]
    questions = passages(7, 40)  # held out: neither trained on nor calibrated with

    before = {text: await chat(client, LATEST, text) for text in unrelated}
    for text, answer in before.items():
        route = answer["route"]
        assert route["answered_by"] == "trunk", (text, route)  # nothing trained: as before
        assert route["reason"].startswith("trunk: no trained kernel here; standby kernel")

    document, held = phrases(1, 400), passages(2, 30)
    kernel = await sync_to_async(learn)(models, document, held, calibration)
    meta = published.kernel_meta(kernel)
    assert meta is not None
    radius = meta["radius"]

    after = {text: await chat(client, LATEST, text) for text in questions}
    hits = [a["route"] for a in after.values() if a["route"]["kernel"] == kernel]
    assert len(hits) >= 0.9 * len(questions), [a["route"] for a in after.values()]
    for route in hits:
        assert route["answered_by"] == "kernel" and route["radius"] == pytest.approx(radius)
        assert route["reason"] == (
            f"kernel {kernel}: within its radius (d {route['distance']:.2f} ≤ r {radius:.2f})"
        )

    pinned = pinned_name(kernel)
    for text in questions[:3]:  # the kernel's answer is the pinned kernel model's
        if after[text]["route"]["kernel"] == kernel:
            alone = await chat(client, pinned, text)
            assert alone["message"] == after[text]["message"]
            assert alone["route"]["answered_by"] == "pinned"
            assert alone["route"]["reason"] == f"pinned: {pinned}"

    again = {text: await chat(client, LATEST, text) for text in unrelated}
    hijacked = [t for t, a in again.items() if a["route"]["kernel"] == kernel]
    assert len(hijacked) <= 0.1 * len(unrelated), hijacked
    unchanged = [t for t in unrelated if again[t]["message"] == before[t]["message"]]
    assert len(unchanged) >= 0.9 * len(unrelated)
    for text, answer in again.items():
        if text in hijacked:
            continue
        route = answer["route"]
        assert answer["message"] == before[text]["message"], text  # word for word
        assert route["answered_by"] == "trunk" and route["kernel"] != kernel
        assert route["nearest"]["kernel"] == kernel and route["nearest"]["distance"] > radius
        assert route["reason"].startswith(
            f"trunk: no kernel within r (nearest: {kernel} at "
            f"{route['nearest']['distance']:.2f}, r {radius:.2f}); standby kernel"
        )

    # every answer is stored with its route and reason (the interactions API shows `routed`)
    def stored() -> list[dict[str, Any]]:
        return [row.routed[0] for row in Interaction.objects.filter(model=LATEST)]

    expected = len(before) + len(after) + len(again)
    for _ in range(200):
        if len(await sync_to_async(stored)()) >= expected:
            break
        await asyncio.sleep(0.05)
    rows = await sync_to_async(stored)()
    assert len(rows) == expected and all(r["reason"] and r["answered_by"] for r in rows)


async def test_a_rollback_brings_back_the_previous_versions_radius(models: Path) -> None:
    client = AsyncClient()
    document, held = phrases(1, 400), passages(2, 30)
    kernel = await sync_to_async(learn)(models, document, held, openings(200))
    first = published.kernel_meta(kernel)
    assert first is not None
    question = ""
    for candidate in passages(7, 10):
        if (await chat(client, LATEST, candidate))["route"]["kernel"] == kernel:
            question = candidate
            break
    assert question, "none of the document's questions reached its kernel"

    # a second version whose radius admits nothing: the trunk answers the same question
    adapter, cfg = published.load_adapter(kernel)
    tight = {**first, "radius": 0.01}
    await sync_to_async(published.publish_adapter)(kernel, adapter, cfg, tight)
    answer = await chat(client, LATEST, question)
    assert answer["route"]["answered_by"] == "trunk"
    assert answer["route"]["nearest"] == {
        "kernel": kernel,
        "distance": pytest.approx(answer["route"]["nearest"]["distance"]),
        "radius": 0.01,
    }
    assert "r 0.01)" in answer["route"]["reason"]

    # rolled back (the link re-pointed, live): the next request reloads with the old radius
    await sync_to_async(published.rollback_dir)(published.kernel_dir(kernel))
    answer = await chat(client, LATEST, question)
    assert answer["route"]["kernel"] == kernel and answer["route"]["answered_by"] == "kernel"
    assert answer["route"]["radius"] == pytest.approx(first["radius"])


async def test_an_adapter_without_a_calibrated_radius_gets_the_default(
    models: Path, settings
) -> None:
    client = AsyncClient()
    coordizer = published.load_coordizer()
    trunk = load_trunk(models / "trunk")
    kernel = e8.kernel_for_role("HEART")
    text = "Quillmere glimmers above the salt marsh at dusk."
    anchor = coordizer.text_basin(as_chat(text))
    adapter = Adapter(trunk.cfg, LoRAConfig(), seed=1)
    await sync_to_async(published.publish_adapter)(kernel, adapter, trunk.cfg)  # no kernel.json
    await sync_to_async(Kernel.objects.filter(index=kernel).update)(anchor=anchor.tolist())
    assert published.kernel_meta(kernel) is None

    settings.ROUTE_RADIUS = 0.5
    near = await chat(client, LATEST, text)
    assert near["route"]["kernel"] == kernel and near["route"]["radius"] == 0.5
    assert near["route"]["reason"] == f"kernel {kernel}: within its radius (d 0.00 ≤ r 0.50)"
    far = await chat(client, LATEST, "Return the number of elements in the list.")
    assert far["route"]["answered_by"] == "trunk" and far["route"]["kernel"] != kernel
    assert far["route"]["nearest"]["radius"] == 0.5


async def body_of(response: Any) -> bytes:
    if not response.streaming:
        return bytes(response.content)
    return b"".join([part async for part in response.streaming_content])


async def test_every_protocol_says_who_answered_and_why(models: Path) -> None:
    client = AsyncClient()
    prompt = "Return the number of elements in the list."

    async def post(path: str, body: dict[str, Any]) -> bytes:
        response = await client.post(path, json.dumps(body), content_type="application/json")
        assert response.status_code == 200
        return await body_of(response)

    ollama = {"model": LATEST, "prompt": prompt, "options": GREEDY}
    lines = [json.loads(x) for x in (await post("/api/generate", ollama)).splitlines()]
    assert all("route" not in line for line in lines[:-1]) and lines[-1]["done"]
    route = lines[-1]["route"]
    assert set(route) == {"kernel", "role", "distance", "answered_by", "reason", "radius"}
    assert route["answered_by"] == "trunk" and route["kernel"] in e8.preset_kernels("minimal")
    assert route["role"] == e8.role_of(route["kernel"]).value and route["distance"] > 0

    openai = {"model": LATEST, "max_tokens": 8, "temperature": 0}
    asked = {**openai, "messages": [{"role": "user", "content": prompt}]}
    whole = json.loads(await post("/v1/chat/completions", asked))
    assert whole["route"]["answered_by"] == "trunk" and whole["choices"][0]["finish_reason"]
    events = (await post("/v1/chat/completions", {**asked, "stream": True})).split(b"\n\n")
    chunks = [json.loads(e[6:]) for e in events if e.startswith(b"data: {")]
    assert [c for c in chunks if "route" in c] == [chunks[-1]]  # the finish chunk
    assert chunks[-1]["choices"][0]["finish_reason"] and chunks[-1]["route"] == whole["route"]
    events = (await post("/v1/completions", {**openai, "prompt": prompt, "stream": True})).split(
        b"\n\n"
    )
    chunks = [json.loads(e[6:]) for e in events if e.startswith(b"data: {")]
    assert [c for c in chunks if "route" in c] == [chunks[-1]]
    pinned = pinned_name(e8.kernel_for_role("HEART"))
    alone = json.loads(await post("/v1/completions", {**openai, "model": pinned, "prompt": prompt}))
    assert alone["route"]["answered_by"] == "pinned"
    assert alone["route"]["reason"] == f"pinned: {pinned} (no adapter: the bare trunk)"


async def test_with_every_kernel_trained_and_none_near_the_bare_trunk_answers(
    models: Path, settings
) -> None:
    client = AsyncClient()
    trunk = load_trunk(models / "trunk")
    minimal = e8.preset_kernels("minimal")
    for index in minimal:  # every kernel of the preset has an adapter, none is near
        adapter = Adapter(trunk.cfg, LoRAConfig(), seed=index)
        with torch.no_grad():
            for p in adapter.b.values():
                p.normal_(0, 0.5)  # an adapter that changes the answers
        await sync_to_async(published.publish_adapter)(index, adapter, trunk.cfg)
    settings.ROUTE_RADIUS = 0.01
    text = "Return the number of elements in the list."
    answer = await chat(client, "qig-constellation:minimal", text)
    route = answer["route"]
    assert route["kernel"] is None and route["role"] is None and route["distance"] is None
    assert route["answered_by"] == "trunk" and route["nearest"]["kernel"] in minimal
    assert route["reason"] == (
        f"trunk: no kernel within r (nearest: {route['nearest']['kernel']} at "
        f"{route['nearest']['distance']:.2f}, r 0.01)"
    )
    standby = next(k for k in range(e8.N_ROOTS) if k not in minimal)
    bare = await chat(client, pinned_name(standby), text)
    assert answer["message"] == bare["message"]  # the bare trunk, word for word
    trained = await chat(client, pinned_name(minimal[0]), text)
    assert trained["route"]["reason"] == f"pinned: {pinned_name(minimal[0])}"
