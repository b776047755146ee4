"""Federated adapter averaging on Flower (issue 14 item 3, docs/flower.md).

Fast: FFA-LoRA's average is exact (s·A·mean(B) is the weighted mean of the clients' s·A·Bᵢ, with
our reference mean and with Flower's own FedAvg aggregation) and averaging A and B separately is
not; keys and certificates; the API's clear refusals.

Live (real processes on loopback, `federation.flower.measure.TinyFleet`): central a `qig serve`
with QIG_FLOWER=1 (its SuperLink supervised, TLS and SuperNode authentication on), two edges
joined with real tokens, each running its SuperNode with its own key, holding 2 and 1 high-value
learnings for the tiny model's kernel. One start of 2 Flower rounds, watched on the dashboard's
websocket: round 1's average is the exact example-weighted average of the edges' updates (read
from the updates central keeps); in round 2 one edge's SuperNode is killed with `kill -9` after
it got its message, and the round completes with the other edge's update.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import websockets
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from safetensors.numpy import load_file

from constellation.engine import Adapter, LoRAConfig, trunk_preset
from federation import packets
from federation.flower import enrol, ffa, pki
from federation.flower.measure import KERNEL, TinyFleet
from tests.live.product import next_message

CFG = trunk_preset("tiny", vocab_size=512, max_seq_len=64)


def client_updates(n: int, seed: int = 0) -> tuple[ffa.Arrays, list[ffa.Arrays], list[float]]:
    """A shared A and `n` clients' trained B (random, as training would leave them)."""
    shared = Adapter(CFG, LoRAConfig(), seed=seed)
    a, _ = ffa.split(shared)
    g = np.random.default_rng(seed)
    zero = ffa.split(shared)[1]
    bs = [
        {k: g.normal(0, 0.05, v.shape).astype(np.float32) for k, v in zero.items()}
        for _ in range(n)
    ]
    return a, bs, [float(w) for w in g.integers(1, 20, n)]


def test_ffa_average_of_b_is_the_exact_weighted_average_of_the_deltas() -> None:
    a, bs, weights = client_updates(3)
    scale = LoRAConfig().scale
    mean_b = ffa.weighted_mean(bs, weights)
    want = ffa.weighted_mean([ffa.delta(a, b, scale) for b in bs], weights)
    assert ffa.max_abs_difference(ffa.delta(a, mean_b, scale), want) < 1e-12
    # Flower's FedAvg aggregation (float32, weighted by num-examples) gives the same, to float32
    replies = [
        RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in b.items()}),
                    "metrics": MetricRecord({"num-examples": int(w)})})
        for b, w in zip(bs, weights, strict=True)
    ]  # fmt: skip
    flower_b = {k: v.numpy() for k, v in aggregate_arrayrecords(replies, "num-examples").items()}
    assert ffa.max_abs_difference(ffa.delta(a, flower_b, scale), want) < 1e-6


def test_averaging_a_and_b_separately_is_not_exact() -> None:
    _, bs, weights = client_updates(2, seed=1)
    a_s = [ffa.split(Adapter(CFG, LoRAConfig(), seed=s))[0] for s in (1, 2)]
    scale = LoRAConfig().scale
    want = ffa.weighted_mean(
        [ffa.delta(a, b, scale) for a, b in zip(a_s, bs, strict=True)], weights
    )
    naive = ffa.delta(ffa.weighted_mean(a_s, weights), ffa.weighted_mean(bs, weights), scale)
    assert ffa.max_abs_difference(naive, want) > 1e-3


def test_an_adapter_travels_as_a_and_b_and_is_checked_against_the_trunk() -> None:
    adapter = Adapter(CFG, LoRAConfig(), seed=3)
    a, b = ffa.split(adapter)
    again = ffa.assemble(CFG, LoRAConfig(), a, b)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in adapter.state_dict().items())
    key = next(iter(b))
    with pytest.raises(ValueError, match=rf"B\[{key}\]: shape"):
        ffa.assemble(CFG, LoRAConfig(), a, {**b, key: b[key][:, :-1]})
    with pytest.raises(ValueError, match="not finite"):
        ffa.assemble(CFG, LoRAConfig(), a, {**b, key: np.full_like(b[key], np.nan)})
    with pytest.raises(ValueError, match="missing"):
        ffa.assemble(CFG, LoRAConfig(), a, {k: v for k, v in b.items() if k != key})
    with pytest.raises(ValueError, match="positive"):
        ffa.weighted_mean([b], [0.0])


def test_keys_and_certificates(tmp_path: Path) -> None:
    private, public = pki.supernode_key(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600
    assert pki.check_public_key(public).startswith("ecdsa-sha2-nistp384 ")
    assert pki.supernode_key(tmp_path)[1] == public  # made once
    with pytest.raises(ValueError, match="OpenSSH"):
        pki.check_public_key("ssh-ed25519 not-a-key")
    paths = pki.ensure_tls(tmp_path, pki.tls_names("127.0.0.1", ["central.example"]))
    ca = paths["ca"].read_text()
    assert pki.check_ca(ca) == ca
    with pytest.raises(ValueError, match="not a CA"):
        pki.check_ca(paths["cert"].read_text())
    cert = paths["cert"].read_bytes()
    pki.ensure_tls(tmp_path, pki.tls_names("127.0.0.1", ["central.example"]))
    assert paths["cert"].read_bytes() == cert  # the same names: kept
    pki.ensure_tls(tmp_path, pki.tls_names("127.0.0.1", ["other.example"]))
    assert paths["cert"].read_bytes() != cert and paths["ca"].read_text() == ca  # CA kept


def test_a_key_request_is_signed_by_the_node_key() -> None:
    key = packets.new_key()
    body = enrol.request("0b5c3a7e-0000-4000-8000-000000000000", "ecdsa-sha2-nistp384 AAAA", key)
    assert enrol._verify(body, key.public_key(), enrol.KEY_DOMAIN)
    assert not enrol._verify({**body, "public_key": "another"}, key.public_key(), enrol.KEY_DOMAIN)
    assert not enrol._verify(body, key.public_key(), enrol.REPLY_DOMAIN)  # (domain-separated)


def test_qig_up_supervises_the_flower_process_of_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from qigcenter.cli import build_children

    for role, name, module in (("central", "flower-superlink", "federation.flower.link"),
                               ("edge", "flower-supernode", "federation.flower.node")):  # fmt: skip
        monkeypatch.setenv("QIG_FEDERATION", role)
        monkeypatch.setenv("QIG_FLOWER", "1")
        children = {c.name: c for c in build_children("127.0.0.1", 9200, False, Path("/tmp"))}
        assert children[name].argv[1:] == ["-m", module] and not children[name].essential
        monkeypatch.setenv("QIG_FLOWER", "0")
        assert name not in {c.name for c in build_children("127.0.0.1", 9200, False, Path("/tmp"))}


# ---- the API's refusals -----------------------------------------------------------------------
@pytest.mark.django_db
def test_starting_a_round_is_for_admins_on_a_flower_central(
    admin_api: Any, dev_api: Any, settings: Any
) -> None:
    url = "/api/v1/federation/rounds/"
    assert dev_api.post(url, {"kernels": [13]}, format="json").status_code == 403
    settings.FEDERATION, settings.FLOWER = "", False
    reply = admin_api.post(url, {"kernels": [13], "min_edges": 2, "rounds": 1}, format="json")
    assert reply.status_code == 409 and "QIG_FLOWER=1" in reply.json()["detail"]
    bad = [({"kernels": []}, "kernels"), ({"kernels": [240]}, "kernels"), ({}, "kernels"),
           ({"kernels": [13, 13]}, "kernels"), ({"kernels": [13], "rounds": 0}, "rounds"),
           ({"kernels": [13], "min_edges": 0}, "min_edges")]  # fmt: skip
    for body, field in bad:
        reply = admin_api.post(url, body, format="json")
        assert reply.status_code == 400 and field in reply.json(), (body, reply.json())
    assert admin_api.get(url).status_code == 200
    assert admin_api.get(url + "99999/").status_code == 404


@pytest.mark.django_db
def test_a_key_request_is_refused_with_its_reason(anon_api: Any, settings: Any) -> None:
    url = "/api/v1/federation/flower/keys/"
    settings.FEDERATION, settings.FLOWER = "", False
    assert anon_api.post(url, {}, format="json").status_code == 404
    settings.FEDERATION, settings.FLOWER = "central", True
    assert anon_api.post(url, {"node": "x"}, format="json").status_code == 400
    body = enrol.request("0b5c3a7e-0000-4000-8000-000000000000", "x", packets.new_key())
    reply = anon_api.post(url, body, format="json")
    assert reply.status_code == 403 and "allow-list" in reply.json()["detail"]


# ---- live: a SuperLink and two SuperNodes on loopback ------------------------------------------
@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyFleet]:
    fleet = TinyFleet(
        tmp_path_factory.mktemp("flower"),
        {"edge-a": 2, "edge-b": 1},
        QIG_FLOWER_ROUND_TIMEOUT_S="45",
        QIG_FLOWER_LOCAL_STEPS="4",
    )
    try:
        # Trained in this process: its random draws must not shift the torch RNG state later
        # tests start from.
        with torch.random.fork_rng(devices=[]):
            fleet.start()
        yield fleet
    finally:
        fleet.stop()


def adapter_scale(fleet: TinyFleet) -> float:
    meta = json.loads(
        next((fleet.root / "central" / "models" / "kernels").rglob("adapter.json")).read_text()
    )
    return float(meta["lora"]["alpha"]) / float(meta["lora"]["rank"])


def is_round(message: dict[str, Any], round_id: int) -> bool:
    payload = message.get("payload", {})
    return bool(payload.get("kind") == "federation.round" and payload.get("id") == round_id)


async def round_messages(fleet: TinyFleet, round_id: int) -> list[dict[str, Any]]:
    """The `federation.round` messages of a round on the dashboard's websocket, until it is
    done."""
    assert fleet.client is not None
    cookie = "; ".join(f"{name}={value}" for name, value in fleet.client.cookies.items())
    ws = await websockets.connect(
        fleet.base.replace("http", "ws") + "/ws/telemetry/",
        additional_headers={"Cookie": cookie, "Origin": fleet.base},
    )
    seen: list[dict[str, Any]] = []
    try:
        await ws.send(json.dumps({"type": "subscribe", "topics": ["federation"]}))
        while not seen or seen[-1]["status"] not in ("completed", "failed"):
            message = await next_message(ws, lambda m: is_round(m, round_id), 240)
            seen.append(message["payload"])
    finally:
        await ws.close()
    return seen


async def kill_in_round(fleet: TinyFleet, edge: str, server_round: int, mark: int) -> None:
    """`kill -9` the edge's SuperNode once it received its training message of `server_round`
    (its log from `mark` on: the round's messages only)."""
    log = fleet.root / "logs" / f"{edge}-node.log"
    deadline = time.monotonic() + 180
    while log.read_bytes()[mark:].count(b"Receiving: train message") < server_round:
        assert time.monotonic() < deadline, f"{edge} never received round {server_round}'s message"
        await asyncio.sleep(0.2)
    fleet.kill_node(edge)  # the SuperNode and the ClientApp it started


@pytest.mark.live
async def test_a_round_is_exact_and_survives_an_edge_killed_mid_round(fleet: TinyFleet) -> None:
    """Flower round 1: both edges; its average is the exact weighted average of their updates.
    Flower round 2: edge-b's SuperNode is killed with `kill -9` after it got the message; the
    round completes with edge-a's update alone."""
    mark = (fleet.root / "logs" / "edge-b-node.log").stat().st_size
    row = fleet.start_round([KERNEL], min_edges=2, rounds=2)
    assert row["status"] in ("queued", "running") and row["run_id"]
    killer = asyncio.create_task(kill_in_round(fleet, "edge-b", 2, mark))
    live = await round_messages(fleet, row["id"])
    await killer
    assert live[-1]["status"] == "completed", live[-1]["error"] or live[-1]
    assert {len(m["history"]) for m in live} >= {1, 2}  # each Flower round shown as it ended
    done = fleet.get_round(row["id"])
    assert done["history"] == live[-1]["history"]
    first, second = done["history"]
    assert (first["kernel"], first["round"], second["round"]) == (KERNEL, 1, 2)

    # round 1: the exact example-weighted average of both edges' updates
    folder = fleet.round_dir(row["id"]) / f"kernel-{KERNEL}"
    start = load_file(str(folder / "start.safetensors"))
    a = {k[2:]: v for k, v in start.items() if k.startswith("a.")}
    scale = adapter_scale(fleet)
    weights = {e["edge"]: e["examples"] for e in first["edges_in"]}
    assert weights == {"edge-a": 2, "edge-b": 1} and first["edges_out"] == []
    assert first["averaged"] and first["examples"] == 3 and first["loss"] is not None
    bs = {edge: load_file(str(folder / "round-1" / f"{edge}.safetensors")) for edge in weights}
    mean_b = load_file(str(folder / "round-1" / "average.safetensors"))
    assert ffa.max_abs_difference(bs["edge-a"], bs["edge-b"]) > 1e-4  # (they learned apart)
    want = ffa.weighted_mean([ffa.delta(a, bs[e], scale) for e in weights], list(weights.values()))
    assert ffa.max_abs_difference(ffa.delta(a, mean_b, scale), want) < 1e-6

    # round 2: edge-b killed mid-round; the average is edge-a's update
    assert [e["edge"] for e in second["edges_in"]] == ["edge-a"]
    assert [e["edge"] for e in second["edges_out"]] == ["edge-b"], second
    here = folder / "round-2"
    assert not (here / "edge-b.safetensors").exists()
    mean_b = load_file(str(here / "average.safetensors"))
    assert ffa.max_abs_difference(mean_b, load_file(str(here / "edge-a.safetensors"))) == 0.0

    # the gate judged the final adapter; the bundle says what became of it
    verdict = done["result"]["kernels"][str(KERNEL)]
    assert verdict["digest"].startswith("sha256:") and verdict["reason"]
    assert "published" in done["result"]["bundle"]


@pytest.mark.live
def test_a_promoted_average_is_served_and_published_as_an_update_bundle(fleet: TinyFleet) -> None:
    """Both edges in one Flower round; they measure the average on their own learnings
    (federated evaluation), central's gate promotes it with their figures, serves it as the
    kernel's new version and publishes it as an update bundle whose adapter is the average."""
    from constellation.engine.checkpoint import load_adapter

    for edge in ("edge-a", "edge-b"):  # (the test before killed edge-b)
        if fleet.nodes[edge].poll() is not None:
            fleet.restart_node(edge)
    row = fleet.start_round([KERNEL], min_edges=2, rounds=1)
    done = fleet.wait_round(row["id"])
    assert done["status"] == "completed", done["error"]
    verdict = done["result"]["kernels"][str(KERNEL)]
    assert verdict["promoted"], verdict["reason"]
    edges = verdict["figures"]["edges"]
    measured = {e["edge"]: e["examples"] for e in edges["edges"]}
    assert measured == {"edge-a": 2, "edge-b": 1} and edges["examples"] == 3
    assert verdict["figures"]["own_after"] < verdict["figures"]["own_before"]
    assert "measured on 3 learning(s) of 2 edge(s)" in verdict["reason"]

    # the bundle: published with the kernel, its adapter is the round's average
    bundle = done["result"]["bundle"]
    assert bundle["published"] and bundle["kernels"] == [KERNEL], bundle
    folder = fleet.root / "central" / "federation" / "bundles" / str(bundle["version"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == bundle["version"]
    sent, _ = load_adapter(folder / "kernels" / str(KERNEL))
    a, b = ffa.split(sent)
    kept = fleet.round_dir(row["id"]) / f"kernel-{KERNEL}"
    start = load_file(str(kept / "start.safetensors"))
    assert ffa.max_abs_difference(a, {k[2:]: v for k, v in start.items() if k[:2] == "a."}) == 0
    assert ffa.max_abs_difference(b, load_file(str(kept / "round-1" / "average.safetensors"))) == 0

    # central serves it: its kernel's version says where it came from
    served = fleet.root / "central" / "models" / "kernels" / str(KERNEL)
    meta = json.loads((served.resolve() / "kernel.json").read_text())
    assert meta["source"]["via"] == "flower" and meta["source"]["digest"] == verdict["digest"]
    assert served.resolve().name == verdict["version"]
