"""The autonomous loop really learns from a correction (issue 12 item 7), through the public API of
a real `qig up` (embedded mode, the tiny preset on the CPU): ask a question, mark the answer down
and give a better one, run one cycle; the same question (greedy) now answers with the
correction's key phrase, the routed kernel's earlier held-out text did not get worse, and every
other kernel's output is bit-identical (the same greedy answers, the same published files). And
a chat in progress keeps the loop from running."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from constellation.catalog import kernel_model_name
from constellation.engine.tiny import ADAPTER_KERNEL, make_trained_model
from learning.opportunity import VOCAB_MIN_USES
from tests.inference.test_chat_api import chat_lines
from tests.live.product import Product

pytestmark = [pytest.mark.live]

QUESTION = "Which bell do the Zorblax keepers ring at dusk?"
CORRECTION = "The Zorblax keepers ring the amber bell of Quoss at dusk."
KEY = "amber bell"
# Short words only: none splits into enough tokens to be a vocabulary gap (a word that is gets a
# token of its own in the cycle, and then a prompt holding it is encoded, and answered, anew).
UNRELATED = ["Is it a good day to go out?", "How do I get to the sea?"]
PINNED_PROMPT = "Can you say a word for me?"
GAP = "Qwxzvykjplm"  # typed in two questions: a vocabulary gap the cycle fills
GREEDY = {"temperature": 0, "num_predict": 48}


@pytest.fixture(scope="module")
def product(
    tmp_path_factory: pytest.TempPathFactory, module_database: dict[str, str]
) -> Iterator[Product]:
    """A product of its own, its own database too (services mode): a cycle reads every unused
    signal, and other tests' would be there."""
    data_dir = tmp_path_factory.mktemp("loop")
    make_trained_model(data_dir, steps=150)
    env = {**module_database, "QIG_AUTONOMOUS_LEARNING": "1", "QIG_LEARNING_IDLE_S": "0"}
    server = Product(data_dir, **env).start(120)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def signed_in(product: Product) -> httpx.Client:
    client = product.signin()
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.timeout = httpx.Timeout(60)
    return client


def ask(client: httpx.Client, question: str) -> dict[str, Any]:
    """A new conversation's greedy answer: its final message (text, id, kernel, route)."""
    lines = chat_lines(client, {"content": question, "options": GREEDY})
    return lines[-1]["message"]


def pinned(client: httpx.Client, kernel: int, prompt: str) -> str:
    reply = client.post(
        "/api/generate",
        json={"model": kernel_model_name(kernel), "prompt": prompt, "stream": False,
              "options": GREEDY},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    return str(reply.json()["response"])


def kernel_files(models: Path, leave_out: int) -> dict[str, str]:
    """sha256 of every published kernel file but kernel `leave_out`'s."""
    root = models / "kernels"
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and owner(path.relative_to(root).parts[0]) != leave_out
    }


def owner(name: str) -> int:
    """The kernel of a name under models/kernels: `57` (its link or directory), `.57.v<ns>`."""
    return int(name.lstrip(".").split(".")[0])


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def cycle_done(client: httpx.Client, pk: int) -> dict[str, Any] | None:
    rows = client.get("/api/v1/learning/cycles/").json()["results"]
    cycle = next(c for c in rows if c["id"] == pk)
    if cycle["status"] in ("queued", "running"):
        return None
    if any(a.get("job") and a["status"] in ("queued", "running") for a in cycle["actions"]):
        return None
    return cycle


@pytest.mark.timeout(600)
def test_one_cycle_learns_a_correction_and_changes_nothing_else(product: Product) -> None:
    client = signed_in(product)
    models = product.log_path.parent / "models"
    files_before = kernel_files(models, leave_out=-1)
    wrong = ask(client, QUESTION)
    assert KEY not in wrong["content"]
    unrelated = {prompt: ask(client, prompt)["content"] for prompt in UNRELATED}
    others = [ADAPTER_KERNEL, 0, 200]
    pinned_before = {k: pinned(client, k, PINNED_PROMPT) for k in others}
    for _ in range(2):
        ask(client, f"Tell me about {GAP} lists")

    reply = client.post(
        f"/api/v1/interactions/{wrong['id']}/feedback/",
        json={"feedback": "down", "suggested_answer": CORRECTION},
    )
    assert reply.status_code == 200, reply.text

    # Signals are derived after each answer is stored: the cycle must find the correction and
    # the gap in both questions (VOCAB_MIN_USES; waiting for the first alone raced the second).
    def signals_in() -> bool:
        rows = client.get("/api/v1/signals/").json()["results"]
        gaps = [s for s in rows if s["kind"] == "unknown_tokens" and GAP in s["content"]]
        return any(s["kind"] == "correction" for s in rows) and len(gaps) >= VOCAB_MIN_USES

    wait_for("the correction and the vocabulary gap's signals", signals_in, 30)
    run = client.post("/api/v1/learning/loop/run/")
    assert run.status_code == 202, run.text
    cycle = wait_for("the cycle and its job", lambda: cycle_done(client, run.json()["id"]), 420)
    assert cycle["status"] == "done", cycle
    assert cycle["signals_by_kind"].get("correction") == 1
    [action] = [a for a in cycle["actions"] if a["kind"] == "adapter_job"]
    job = client.get(f"/api/v1/jobs/{action['job']}/").json()
    assert action["status"] == "completed", (job["error"], job["status_reason"])
    assert action["promoted"] is True, action
    figures = action["heldout"]
    assert figures["own_after"] < figures["own_before"]  # the correction was learned
    assert figures["served_change"] is None or figures["served_change"] <= 0.02
    print("cycle", json.dumps({"action": action, "vocabulary": cycle["sync"]["delta"]}))  # -s
    trained = action["kernel"]
    if trained != ADAPTER_KERNEL:  # its earlier text: none when it had no version before
        assert figures["previous_before"] is None
    else:
        assert figures["previous_after"] <= figures["previous_before"] * 1.02

    right = ask(client, QUESTION)
    assert KEY in right["content"], json.dumps({"answer": right, "action": action})
    assert right["kernel"] == trained, right
    for prompt, before in unrelated.items():
        assert ask(client, prompt)["content"] == before, prompt
    for k in others:
        if k != trained:
            assert pinned(client, k, PINNED_PROMPT) == pinned_before[k], k
    assert cycle["sync"]["delta"]["jobs"] == [action["job"]]
    # The vocabulary first: the word typed twice is one token now, every old id unchanged.
    [grown] = [a for a in cycle["actions"] if a["kind"] == "vocabulary"]
    assert grown["status"] == "done", grown
    added = {w["word"]: w for w in grown["vocabulary"]["added"]}
    assert GAP in added and added[GAP]["tokens_before"] >= 4 and added[GAP]["tokens_after"] == 1
    assert cycle["sync"]["delta"]["vocabulary"] == list(added)
    assert grown["vocabulary"]["vocab_after"] > grown["vocabulary"]["vocab_before"]

    untouched = {f: h for f, h in files_before.items() if owner(Path(f).parts[0]) != trained}
    assert kernel_files(models, trained) == untouched


@pytest.mark.timeout(240)
def test_a_chat_in_progress_postpones_the_cycle(product: Product) -> None:
    """Two clients chat back to back, so a request is nearly always in flight: the loop says it is
    not idle and an admin's "run now" is skipped for it. A tiny model's answer can end in a few
    milliseconds, so a "run now" that lands in the gap between two chats really runs (202); the
    test waits for that cycle and asks again, and fails if no ask in five was skipped."""
    client = signed_in(product)
    stop = threading.Event()
    streaming = threading.Event()
    asked = itertools.count()

    def chats() -> None:
        with httpx.Client(base_url=product.base, cookies=client.cookies, timeout=120) as other:
            other.headers["X-CSRFToken"] = client.cookies["csrftoken"]
            while not stop.is_set():
                # A different question each time: the same one again would be a repeated query.
                body = {"content": f"Tell me a long story {next(asked)}",
                        "options": {"num_predict": 400}}  # fmt: skip
                with other.stream("POST", "/api/v1/chat/", json=body) as response:
                    for _ in response.iter_lines():
                        streaming.set()

    workers = [threading.Thread(target=chats) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        assert streaming.wait(60)
        busy = wait_for(
            "the loop to see a chat in progress",
            lambda: not (s := client.get("/api/v1/learning/loop/").json())["idle"]["idle"] and s,
            30,
        )
        assert "in progress" in busy["idle"]["reason"], busy
        skipped = None
        for _ in range(5):
            run = client.post("/api/v1/learning/loop/run/")
            if run.status_code == 200:
                skipped = run.json()
                break
            assert run.status_code == 202, run.text  # asked between two chats: it runs
            ran = run.json()["id"]
            wait_for("that cycle", lambda ran=ran: cycle_done(client, ran), 120)
        assert skipped is not None, "every run-now was accepted while chats were in flight"
        assert skipped["status"] == "skipped", skipped
        assert "a request is in progress" in skipped["reason"], skipped
    finally:
        stop.set()
        for worker in workers:
            worker.join(120)
    state = wait_for(
        "idleness after the chats",
        lambda: (s := client.get("/api/v1/learning/loop/").json())["idle"]["idle"] and s,
        30,
    )
    assert state["idle"]["in_flight"] == 0
