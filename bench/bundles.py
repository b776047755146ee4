"""Update bundles end to end: a central `qig up` publishes a bundle of 12 kernels' adapters; K
edges (`qig serve --size medium`, real processes, each its own data dir on loopback) hear of
it, download it over HTTP, verify it and swap it in while a client chats with each of them.

python -m bench.bundles [--edges 2] [--rounds 3] [--no-flower]      # last line: one JSON object

Setup: the tiny model (`constellation.engine.tiny`), and an adapter trained for each of the
medium preset's 12 kernels (a few steps each on the tiny corpus), on central; each edge starts
from a copy of central's models directory (the same trunk, no adapters: bundles carry them).
Each round an admin asks central to publish (`POST /api/v1/federation/bundles/`
`{"train": false}`: the served adapters as they are; the same weights every round, so a round
measures the path, not training) and the bench waits until every edge runs it.

Keys: bundle_bytes (the files of one bundle), edges, rounds; apply_ms_p50 / apply_ms_p99 (per
edge and round: the download's end → the end of the first answer to a request the edge received
after the swap, i.e. served by the new version: verify, swap, the model's reload on that
request, the answer); swap_ms_p50 (download end → swap done, the edge's own measure);
answers_total and answers_failed_during_swap (a client on each edge sending /api/generate to
`qig-constellation`, greedy, 8 tokens, back to back from before the first bundle to after the
last: every answer not 200 counts); flower_round_s (one 2-edge tiny Flower round,
`federation.flower.measure_round_s`; null with `flower_note` when it cannot run).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import torch

from constellation.engine import Adapter, LoRAConfig, TokenStream, checkpoint, e8, tiny
from constellation.engine.trainer import TrainConfig, Trainer

from .common import emit

CHAT_MODEL = "qig-constellation"  # routed over the edge's kernels (the trunk before a bundle)


def build_central(root: Path) -> Path:
    """The tiny model plus an adapter for each medium kernel, in central's models dir."""
    torch.manual_seed(0)
    models = tiny.make_trained_model(root, steps=60)
    trunk = checkpoint.load_trunk(models / "trunk")
    coord = tiny.coordizer()
    stream = TokenStream.from_examples(list(tiny.corpus()), coord.encode, coord.eot_id)
    for k in e8.preset_kernels("medium"):
        if (models / "kernels" / str(k)).exists():
            continue
        adapter = Adapter(trunk.cfg, LoRAConfig(), seed=k)
        tune = TrainConfig(mode="adapter", steps=5, batch_size=2, seq_len=32, metrics_every=1000)
        Trainer(trunk, tune, stream, adapter=adapter, kernel=k).fit()
        checkpoint.save_adapter(adapter, trunk.cfg, models / "kernels" / str(k))
    return models


class Chatter(threading.Thread):
    """Back-to-back greedy answers from one edge; (start, end, ok) for each."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.done = threading.Event()
        self.answers: list[tuple[float, float, bool]] = []

    def run(self) -> None:
        body = {"model": CHAT_MODEL, "prompt": "The keepers ring", "stream": False,
                "options": {"temperature": 0, "num_predict": 8}}  # fmt: skip
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self.done.is_set():
                began = time.time()
                try:
                    ok = client.post("/api/generate", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.answers.append((began, time.time(), ok))


def applied(client: httpx.Client, version: int) -> dict[str, Any] | None:
    rows = client.get("/api/v1/federation/bundles/").json()["bundles"]
    return next((b for b in rows if b["version"] == version and b["status"] == "applied"), None)


def after(chatter: Chatter, t: float) -> float | None:
    """The end of the first good answer to a request sent after `t`."""
    return next((end for began, end, ok in list(chatter.answers) if began >= t and ok), None)


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, KeyError, StopIteration):
            found = None
        if found:
            return found
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}")


def main() -> None:
    from tests.live.product import Product

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edges", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flower", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-bundles-"))
    products: list[Any] = []
    try:
        models = build_central(root / "central")
        for i in range(args.edges):
            shutil.copytree(models, root / f"edge-{i}" / "models", symlinks=True)
            shutil.rmtree(root / f"edge-{i}" / "models" / "kernels")
        common = {"QIG_FEDERATION_HEARTBEAT_S": "1", "QIG_FEDERATION_BUNDLE_MIN_LEARNINGS": "0"}
        central = Product(root / "central", QIG_FEDERATION="central", **common).start(180)
        products.append(central)
        admin = central.signin()
        admin.headers["X-CSRFToken"] = admin.cookies["csrftoken"]
        edges = []
        for i in range(args.edges):
            reply = admin.post("/api/v1/nodes/", json={"name": f"edge-{i}", "size": "medium"})
            reply.raise_for_status()
            edge = Product(root / f"edge-{i}", **common, QIG_FEDERATION="edge",
                           QIG_FEDERATION_SIZE="medium", QIG_CENTRAL_URL=central.base,
                           QIG_JOIN_TOKEN=reply.json()["join_token"])  # fmt: skip
            edges.append(edge.start(180, "--size", "medium", command="serve"))
            products.append(edge)
        wait("edges online", lambda: all(n["status"] == "online" for n in
             admin.get("/api/v1/nodes/").json()["results"]), 120)  # fmt: skip
        chatters = [Chatter(e.base) for e in edges]
        for c in chatters:
            c.start()
        samples: list[float] = []
        swaps: list[float] = []
        sizes: list[int] = []
        for _ in range(args.rounds):
            time.sleep(2.0)
            reply = admin.post("/api/v1/federation/bundles/", json={"train": False})
            reply.raise_for_status()
            version, sizes = reply.json()["version"], [*sizes, reply.json()["bytes"]]
            for edge, chatter in zip(edges, chatters, strict=True):
                client = edge.signin()
                row = wait(f"{edge.base} runs bundle {version}",
                           lambda c=client, v=version: applied(c, v), 120)  # fmt: skip
                swapped = datetime.fromisoformat(row["applied_at"]).timestamp()
                downloaded = swapped - row["apply_ms"] / 1000
                first = wait("an answer after the swap",
                             lambda ch=chatter, t=swapped: after(ch, t), 60)  # fmt: skip
                samples.append((first - downloaded) * 1000)
                swaps.append(row["apply_ms"])
        time.sleep(2.0)
        for c in chatters:
            c.done.set()
            c.join(90)
        answers = [a for c in chatters for a in c.answers]
        flower: float | None = None
        note = ""
        if args.flower:
            try:
                from federation.flower import measure_round_s

                flower = round(float(measure_round_s(root / "flower")), 2)
            except Exception as exc:  # not built here, or it failed: said, not hidden
                note = f"{type(exc).__name__}: {exc}"[:300]
        ordered = sorted(samples)
        result = {
            "bundle_bytes": statistics.median(sizes),
            "edges": args.edges,
            "rounds": args.rounds,
            "apply_ms_p50": round(statistics.median(ordered), 1),
            "apply_ms_p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "apply_ms_all": [round(s, 1) for s in samples],
            "swap_ms_p50": round(statistics.median(swaps), 1),
            "answers_total": len(answers),
            "answers_failed_during_swap": sum(not ok for _, _, ok in answers),
            "flower_round_s": flower,
        }
        if note:
            result["flower_note"] = note
        emit(result, {"root": str(root), "kernels": e8.preset_kernels("medium")})
    finally:
        for product in reversed(products):
            if product.process is not None and product.process.poll() is None:
                product.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
