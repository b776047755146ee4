"""Update bundles with real processes (issue 14 items 1, 2 and 6): a central `qig up` and two
edges (`qig up`, the learning loop on), each with its own data dir, port and (services mode)
database, on loopback; the edges run a copy of central's trunk (docs/federation.md).

Each edge learns a correction; the edges send the learnings (sleep packets) to central; an admin
asks central to train; central's adapter jobs pass the promotion gate and central publishes a
signed bundle; both edges fetch it over HTTP, verify and apply it live, and each answers the
question the *other* edge was corrected on. A bundle whose file was changed on central's disk
is refused by the edge that fetches it ("bad hash"), which keeps running the one before and
tells central."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from constellation.engine.tiny import make_trained_model
from tests.federation.test_federation_live import (
    QUESTIONS,
    fleet_of,
    learn,
    signed_in,
    stop_all,
    wait_for,
)
from tests.inference.test_chat_api import chat_lines
from tests.live.product import Product

pytestmark = [pytest.mark.live]

GREEDY = {"temperature": 0, "num_predict": 32}
KEYS = ("amber bell", "copper tower")  # the corrections' key phrases, QUESTIONS' order


class Fleet:
    def __init__(self, root: Path, databases: dict[str, dict[str, str]]) -> None:
        common = {"QIG_FEDERATION_HEARTBEAT_S": "1"}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models = make_trained_model(root / "central", steps=150)
        for name in ("edge-a", "edge-b"):  # the same trunk, as `cp -a` of central's models
            shutil.copytree(models, root / name / "models", symlinks=True)
        self.root = root
        self.central = Product(root / "central", QIG_FEDERATION="central",
                               QIG_FEDERATION_BUNDLE_MIN_LEARNINGS="0", **common,
                               **databases["central"]).start(120)  # fmt: skip
        admin = signed_in(self.central)
        tokens = {}
        for name in ("edge-a", "edge-b"):
            reply = admin.post("/api/v1/nodes/", json={"name": name, "size": "minimal"})
            assert reply.status_code == 201, reply.text
            tokens[name] = reply.json()["join_token"]
        edge = {**common, "QIG_FEDERATION": "edge", "QIG_CENTRAL_URL": self.central.base,
                "QIG_AUTONOMOUS_LEARNING": "1", "QIG_LEARNING_IDLE_S": "0",
                "QIG_LEARNING_INTERVAL_S": "100000"}  # fmt: skip
        self.a = Product(root / "edge-a", **edge, QIG_JOIN_TOKEN=tokens["edge-a"],
                         **databases["edge-a"]).start(120)  # fmt: skip
        self.b = Product(root / "edge-b", **edge, QIG_JOIN_TOKEN=tokens["edge-b"],
                         **databases["edge-b"]).start(120)  # fmt: skip

    def stop(self) -> None:
        stop_all(self.a, self.b, self.central)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet_of(Fleet, "bundle", tmp_path_factory.mktemp("bundles")) as fleet:
        yield fleet


def bundles(product: Product) -> dict[str, Any]:
    reply = signed_in(product).get("/api/v1/federation/bundles/")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def running(product: Product) -> dict[str, Any] | None:
    return next((b for b in bundles(product)["bundles"] if b["status"] == "applied"), None)


def answer(product: Product, question: str) -> str:
    lines = chat_lines(signed_in(product), {"content": question, "options": GREEDY})
    return str(lines[-1]["message"]["content"])


def nodes(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {row["node"]: row for row in bundles(fleet.central)["edges"]}


@pytest.mark.timeout(1500)
def test_two_edges_learn_central_trains_and_both_run_the_bundle(fleet: Fleet) -> None:
    admin = signed_in(fleet.central)
    wait_for("both edges online", lambda: all(n["status"] == "online" for n in
             admin.get("/api/v1/nodes/").json()["results"]), 60)  # fmt: skip
    learned = [learn(fleet.a, *QUESTIONS[0]), learn(fleet.b, *QUESTIONS[1])]
    assert all(a["promoted"] for a in learned), learned
    # Each edge's correction reaches central as a learning of the kernel it learned on.
    received = wait_for("central holds both learnings", lambda: (rows := bundles(fleet.central)[
        "learnings"]) and sum(r["received"] for r in rows) == 2 and rows, 60)  # fmt: skip
    assert {(r["node"], r["kernel"]) for r in received} == {
        ("edge-a", learned[0]["kernel"]), ("edge-b", learned[1]["kernel"])}  # fmt: skip
    reply = admin.post("/api/v1/federation/bundles/", json={"train": True})
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "training" and reply.json()["learnings"] == 2
    again = admin.post("/api/v1/federation/bundles/", json={"train": True})
    assert again.status_code == 409, again.text  # nothing new to train on
    made = reply.json()["id"]

    def finished() -> dict[str, Any] | None:
        row = next(r for r in bundles(fleet.central)["bundles"] if r["id"] == made)
        return row if row["status"] != "training" else None

    row = wait_for("central's bundle", finished, 900)
    assert row["status"] == "published", row
    version = row["version"]
    for edge in (fleet.a, fleet.b):
        ran = wait_for("the edge runs it", lambda e=edge: (r := running(e)) and r[
            "version"] == version and r, 120)  # fmt: skip
        assert ran["apply_ms"] is not None
    wait_for("central knows who runs what", lambda: all(
        n["version"] == version for n in nodes(fleet).values()), 30)  # fmt: skip
    # Both edges answer both corrected questions: B learned A's correction and A B's.
    for edge in (fleet.a, fleet.b):
        for (question, _), key in zip(QUESTIONS, KEYS, strict=True):
            said = answer(edge, question)
            assert key in said, (edge.base, question, said)


@pytest.mark.timeout(600)
def test_a_tampered_bundle_is_refused_and_the_edge_keeps_the_one_it_runs(fleet: Fleet) -> None:
    before = running(fleet.b)
    assert before is not None
    fleet.b.stop()
    admin = signed_in(fleet.central)
    reply = admin.post("/api/v1/federation/bundles/", json={"train": False})
    assert reply.status_code == 201, reply.text
    version = reply.json()["version"]
    kernel = reply.json()["kernels"][0]
    target = (fleet.root / "central" / "federation" / "bundles" / str(version) / "kernels"
              / str(kernel) / "adapter.safetensors")  # fmt: skip
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # one bit of a weight, after central signed the manifest
    target.write_bytes(bytes(data))
    fleet.b.start(120)  # comes back, hears of the newest bundle, fetches it
    refused = wait_for("B refused it", lambda: next((b for b in bundles(fleet.b)["bundles"] if b[
        "version"] == version and b["status"] == "refused"), None), 120)  # fmt: skip
    assert "bad hash" in refused["reason"], refused
    assert running(fleet.b)["version"] == before["version"]  # type: ignore[index]
    said = wait_for("central heard it", lambda: (n := nodes(fleet)["edge-b"])[
        "status"].startswith("refused") and n, 60)  # fmt: skip
    assert said["version"] == before["version"] and str(version) in said["status"]
    # A forged request for a bundle file is refused too.
    anonymous = httpx.get(f"{fleet.central.base}/api/v1/federation/bundles/{version}/manifest/")
    assert anonymous.status_code == 403
