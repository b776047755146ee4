"""Federation with real processes (issue 13 item 7): a central `qig up`, edge A a `qig up` that
learns (the tiny preset, the learning loop on a correction), edge B a `qig serve` (the API alone,
the laptop edge); each with its own data dir, port and (services mode) database, on loopback.

A learning on A reaches central and moves B's anchor; central killed with `kill -9` while A keeps
learning loses nothing (every packet arrives exactly once: A's acknowledged count equals central's
received count, no packet id twice, B catches up); A's federation client killed with `kill -9`
comes back and drains; a revoked node is cut off at once."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psutil
import pytest
import torch

from constellation.engine import e8, fisher_rao
from constellation.engine.tiny import make_trained_model
from tests.conftest import fresh_database
from tests.live.product import Product

pytestmark = [pytest.mark.live]

HELD = set(e8.preset_kernels("minimal"))
QUESTIONS = [
    ("Which bell do the Zorblax keepers ring at dusk?",
     "The Zorblax keepers ring the amber bell of Quoss at dusk."),
    ("Where do the Zorblax keepers sleep at night?",
     "The Zorblax keepers sleep in the copper tower of Quoss."),
]  # fmt: skip
GREEDY = {"temperature": 0, "num_predict": 24}


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except (httpx.HTTPError, KeyError):
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def signed_in(product: Product) -> httpx.Client:
    client = product.signin()
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.timeout = httpx.Timeout(60)
    return client


def kill_hard(product: Product) -> None:
    """`kill -9` the whole product: its supervisor and every process under it."""
    assert product.process is not None
    processes = [psutil.Process(product.process.pid), *product.descendants()]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)
    product.process.wait(10)


class Fleet:
    def __init__(self, root: Path, databases: dict[str, dict[str, str]]) -> None:
        self.root = root
        self.databases = databases
        common = {"QIG_FEDERATION_HEARTBEAT_S": "1"}
        self.central = Product(root / "central", QIG_FEDERATION="central", **common,
                               **databases["central"])  # fmt: skip
        self.central.start(120)
        admin = signed_in(self.central)
        self.tokens = {}
        for name, size in (("edge-a", "minimal"), ("edge-b", "minimal")):
            reply = admin.post("/api/v1/nodes/", json={"name": name, "size": size})
            assert reply.status_code == 201, reply.text
            assert reply.json()["status"] == "pending"
            self.tokens[name] = reply.json()["join_token"]
            assert reply.json()["join_command"].endswith(self.tokens[name])
        listed = admin.get("/api/v1/nodes/").json()["results"]
        assert all("join_token" not in row for row in listed)  # shown once, never again
        # Trained in this process: its random draws must not shift the torch RNG state that
        # later tests in the run start from (tests/learning/test_promotion.py's figures do).
        with torch.random.fork_rng(devices=[]):
            make_trained_model(root / "edge-a", steps=150)
        edge = {**common, "QIG_FEDERATION": "edge", "QIG_CENTRAL_URL": self.central.base}
        self.a = Product(
            root / "edge-a",
            **edge,
            QIG_JOIN_TOKEN=self.tokens["edge-a"],
            QIG_AUTONOMOUS_LEARNING="1",
            QIG_LEARNING_IDLE_S="0",
            QIG_LEARNING_INTERVAL_S="100000",
            **databases["edge-a"],
        ).start(120)
        self.b = Product(
            root / "edge-b", **edge, QIG_JOIN_TOKEN=self.tokens["edge-b"], **databases["edge-b"]
        ).start(120, command="serve")

    def nodes(self) -> dict[str, dict[str, Any]]:
        rows = signed_in(self.central).get("/api/v1/nodes/").json()["results"]
        return {row["name"]: row for row in rows}

    def stop(self) -> None:
        stop_all(self.a, self.b, self.central)


def stop_all(*products: Product) -> None:
    for product in products:
        if product.process is not None and product.process.poll() is None:
            product.stop()


F = TypeVar("F")


@contextlib.contextmanager
def fleet_of(
    make: Callable[[Path, dict[str, dict[str, str]]], F], prefix: str, root: Path
) -> Iterator[F]:
    """`make(root, databases)` with a fresh database (services mode) for central and each edge;
    its `stop()` at the end."""
    with contextlib.ExitStack() as stack:
        databases = {
            name: stack.enter_context(fresh_database(f"{prefix}_{name.replace('-', '_')}"))
            for name in ("central", "edge-a", "edge-b")
        }
        fleet = make(root, databases)
        try:
            yield fleet
        finally:
            fleet.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet_of(Fleet, "fed", tmp_path_factory.mktemp("federation")) as fleet:
        yield fleet


def federation(product: Product) -> dict[str, Any]:
    reply = signed_in(product).get("/api/v1/federation/")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def anchor(product: Product, kernel: int) -> np.ndarray:
    reply = signed_in(product).get(f"/api/v1/kernels/{kernel}/")
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["anchor"])


def learn(product: Product, question: str, correction: str) -> dict[str, Any]:
    """Ask, correct, run one loop cycle; returns its adapter job action (promoted)."""
    client = signed_in(product)
    lines = [
        json.loads(line)
        for line in client.post(
            "/api/v1/chat/", json={"content": question, "options": GREEDY}
        ).text.splitlines()
        if line.strip()
    ]
    answer = lines[-1]["message"]
    reply = client.post(
        f"/api/v1/interactions/{answer['id']}/feedback/",
        json={"feedback": "down", "suggested_answer": correction},
    )
    assert reply.status_code == 200, reply.text
    wait_for(
        "the correction signal",
        lambda: any(
            s["kind"] == "correction" and not s.get("used_at")
            for s in client.get("/api/v1/signals/").json()["results"]
        ),
        30,
    )
    run = client.post("/api/v1/learning/loop/run/")
    assert run.status_code == 202, run.text

    def done() -> dict[str, Any] | None:
        rows = client.get("/api/v1/learning/cycles/").json()["results"]
        cycle = next(c for c in rows if c["id"] == run.json()["id"])
        busy = any(a.get("job") and a["status"] in ("queued", "running") for a in cycle["actions"])
        return None if cycle["status"] in ("queued", "running") or busy else cycle

    cycle = wait_for("the cycle and its job", done, 420)
    [action] = [a for a in cycle["actions"] if a["kind"] == "adapter_job"]
    assert action["status"] == "completed", action
    assert action["kernel"] in HELD, action  # an edge learns on its own size's kernels
    assert cycle["sync"]["federated"] is True, cycle["sync"]
    assert len(cycle["sync"]["packets"]) == 1  # the cycle's delta; a promotion adds its anchor
    return dict(action)


@pytest.mark.timeout(900)
def test_a_learning_on_one_edge_moves_the_others_anchor(fleet: Fleet) -> None:
    wait_for("both edges online", lambda: all(
        n["status"] == "online" for n in fleet.nodes().values()), 60)  # fmt: skip
    for edge in (fleet.a, fleet.b):
        state = federation(edge)
        assert state["role"] == "edge" and state["kernels"] == 3
        assert state["central"]["state"] == "connected", state
    b_before = {k: anchor(fleet.b, k) for k in HELD}
    action = learn(fleet.a, *QUESTIONS[0])
    assert action["promoted"], action
    kernel = action["kernel"]
    # A's packets (the kernel's moved anchor, the cycle's delta) reach central and are merged.
    a_state = wait_for("A's outbox drained", lambda: (s := federation(fleet.a)["central"])[
        "outbox"] == 0 and s["packets_acked"] >= 2 and s, 60)  # fmt: skip
    central_a = wait_for("central counted A's packets", lambda: (n := fleet.nodes()["edge-a"])[
        "packets_in"] == a_state["packets_acked"] and n, 30)  # fmt: skip
    assert central_a["per_minute"]["in"] == a_state["packets_acked"]  # all within the minute
    history = signed_in(fleet.central).get(f"/api/v1/federation/anchors/{kernel}/").json()
    [merged] = [v for v in history["versions"] if v["nodes"] == [central_a["uuid"]]]
    central_anchor = anchor(fleet.central, kernel)
    assert np.allclose(central_anchor, merged["anchor"], atol=1e-9)
    assert float(fisher_rao(central_anchor, e8.anchor(kernel))) > 0  # it moved toward A's
    # B follows central along the geodesic (QIG_FEDERATION_FOLLOW 1: onto it) and says so.
    wait_for("B applied the version", lambda: federation(fleet.b)["central"][
        "applied_version"] >= merged["seq"], 30)  # fmt: skip
    b_after = anchor(fleet.b, kernel)
    assert float(fisher_rao(b_after, b_before[kernel])) > 1e-6
    assert float(fisher_rao(b_after, merged["anchor"])) < 1e-6
    wait_for("central saw B's acknowledgement", lambda: fleet.nodes()["edge-b"][
        "applied_version"] >= merged["seq"], 30)  # fmt: skip
    print("merged", json.dumps({"kernel": kernel, "seq": merged["seq"], "a": a_state}))


@pytest.mark.timeout(900)
def test_central_killed_while_an_edge_learns_loses_nothing(fleet: Fleet) -> None:
    before = fleet.nodes()
    kill_hard(fleet.central)
    wait_for("A sees central gone", lambda: federation(fleet.a)["central"]["state"]
             in ("disconnected", "connecting"), 60)  # fmt: skip
    action = learn(fleet.a, *QUESTIONS[1])  # learned while central is down: the outbox keeps it
    waiting = federation(fleet.a)["central"]
    # The cycle's delta, its learnings (a sleep packet: the correction), and a promotion's anchor.
    assert waiting["outbox"] == (3 if action["promoted"] else 2), (waiting, action)
    # An operator's bad day, part two: A's federation client is killed too (its supervisor
    # starts it again), then central comes back on the same data dir, database and port.
    [client] = [p for p in fleet.a.descendants() if "federation.client" in " ".join(p.cmdline())]
    client.send_signal(signal.SIGKILL)
    fleet.central.start(120)
    a_state = wait_for("A's outbox drained", lambda: (s := federation(fleet.a)["central"])[
        "outbox"] == 0 and s["state"] == "connected" and s, 120)  # fmt: skip
    after = wait_for("central counted every packet", lambda: (n := fleet.nodes())["edge-a"][
        "packets_in"] == a_state["packets_acked"] and n, 30)  # fmt: skip
    assert after["edge-a"]["packets_in"] == before["edge-a"]["packets_in"] + waiting["outbox"]
    assert a_state["packets_queued"] == a_state["packets_acked"]  # none lost, none left over
    packets = signed_in(fleet.central).get(f"/api/v1/nodes/{after['edge-a']['id']}/packets/")
    ids = [p["id"] for p in packets.json()["packets"]]
    assert len(ids) == len(set(ids)) == after["edge-a"]["packets_in"]
    # B reconnects and catches up from the last version it applied.
    newest = max(
        v["seq"]
        for k in HELD
        for v in signed_in(fleet.central).get(f"/api/v1/federation/anchors/{k}/").json()["versions"]
    )
    wait_for("B caught up", lambda: federation(fleet.b)["central"]["applied_version"] >= newest, 90)
    print("after restart", json.dumps({"a": a_state, "central": after["edge-a"]}))


@pytest.mark.timeout(300)
def test_a_revoked_node_is_cut_off_at_once(fleet: Fleet) -> None:
    wait_for("B online", lambda: fleet.nodes()["edge-b"]["status"] == "online", 90)
    node = fleet.nodes()["edge-b"]
    reply = signed_in(fleet.central).post(f"/api/v1/nodes/{node['id']}/revoke/")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "revoked"
    state = wait_for("B told it was revoked", lambda: (s := federation(fleet.b)["central"])[
        "state"] == "revoked" and s, 30)  # fmt: skip
    assert "revoked" in state["last_error"]
    assert fleet.nodes()["edge-b"]["status"] == "revoked"
    # Its token cannot be used again, and a new one is not issued to a revoked node.
    again = signed_in(fleet.central).post(f"/api/v1/nodes/{node['id']}/token/")
    assert again.status_code == 409, again.text
