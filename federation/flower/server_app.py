"""The Flower ServerApp (docs/flower.md): runs on central, in the process Flower's SuperLink
starts for the run `flwr run` submitted (`federation.flower.rounds.start`), with central's
settings and database.

For each kernel of the `FlowerRound` (its id is the run config's `round-id`): the starting
adapter is central's served version of the kernel (else a fresh one from the kernel's fixed
seed); its A is frozen and shared, its B is what the edges train and Flower's FedAvg averages,
`rounds` times (`federation.flower.strategy`). Every round's figures go into the row's
`history`, and its updates under `<data dir>/federation/flower/rounds/<id>/kernel-<k>/`: the
start (A and B), each edge's B, and the average. The final adapter (A, mean B) is measured by
the edges on their own learnings (`federation.flower.evaluation`) and goes through the promotion
gate with their figures (`federation.flower.outcome`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from federation.flower import ffa
from federation.flower.setup import django_setup
from federation.flower.strategy import LOSS_KEY, ExactFedAvg, RoundReplies

log = logging.getLogger(__name__)
KEEP_ROUND_DIRS = 5

app = ServerApp()


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord(
        {k: Array(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()}
    )


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def rounds_dir() -> Path:
    from django.conf import settings

    from federation.flower import pki

    return pki.flower_dir(settings.DATA_DIR) / "rounds"


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One safetensors file, written beside and renamed into place."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    os.replace(tmp, path)


def prune_round_dirs(keep: int = KEEP_ROUND_DIRS) -> None:
    root = rounds_dir()
    if not root.is_dir():
        return
    numbered = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for old in numbered[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def evaluate(
    grid: Grid,
    contributors: dict[int, str],
    kernel: int,
    config: ConfigRecord,
    arrays: tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]],
) -> Any:
    """The federated evaluation of the average (`federation.flower.evaluation`): (A, the start's
    B, the mean B) measured by the edges whose update the last Flower round used, those still
    connected and on the allow-list, on their own learnings."""
    from django.conf import settings

    from constellation.models import Kernel
    from federation.flower import enrol, evaluation

    names = enrol.allowed_nodes()
    online = set(grid.get_node_ids())
    nodes = {n: e for n, e in contributors.items() if n in names and n in online}
    anchor = [float(v) for v in Kernel.objects.get(index=kernel).anchor]
    asked = ConfigRecord({**dict(config), "anchor": anchor})
    a, start_b, mean_b = (to_record(x) for x in arrays)
    return evaluation.ask_edges(
        grid, nodes, a, start_b, mean_b, asked, settings.FLOWER_ROUND_TIMEOUT_S
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    django_setup()
    from federation.flower.models import fail

    round_id = int(context.run_config["round-id"])
    try:
        run_round(grid, round_id, str(context.run_id))
    except Exception as exc:
        log.exception("flower round %s failed", round_id)
        fail(round_id, f"{type(exc).__name__}: {exc}")
        raise


def run_round(grid: Grid, round_id: int, run_id: str) -> None:
    from django.conf import settings

    from constellation import published
    from federation.flower import enrol, outcome, rounds

    row = rounds.begin(round_id, run_id)
    trunk = published.load_trunk()
    fingerprint = published.trunk_fingerprint() or ""
    averaged: dict[int, Any] = {}
    for kernel in row.kernels:
        start, name = outcome.starting_adapter(kernel, trunk)
        a, b = ffa.split(start)
        folder = rounds_dir() / str(round_id) / f"kernel-{kernel}"
        both = {**{f"a.{k}": v for k, v in a.items()}, **{f"b.{k}": v for k, v in b.items()}}
        save_arrays(folder / "start.safetensors", both)
        lora = start.lora
        config = ConfigRecord({
            "kernel": int(kernel), "steps": int(settings.FLOWER_LOCAL_STEPS),
            "rank": int(lora.rank), "alpha": float(lora.alpha), "targets": ",".join(lora.targets),
            "trunk": fingerprint, "seed": int(round_id) * 1000 + int(kernel),
        })  # fmt: skip

        contributors: dict[int, str] = {}

        def on_round(
            replies: RoundReplies,
            arrays: ArrayRecord | None,
            metrics: MetricRecord | None,
            kernel: int = kernel,
            folder: Path = folder,
            contributors: dict[int, str] = contributors,
        ) -> None:
            here = folder / f"round-{replies.server_round}"
            contributors.clear()  # (the last Flower round's: they evaluate the average)
            contributors.update({m.metadata.src_node_id: e for e, m in replies.used})
            for edge, reply in replies.used:
                save_arrays(
                    here / f"{edge}.safetensors", from_record(reply.content.array_records["arrays"])
                )
            if arrays is not None:
                save_arrays(here / "average.safetensors", from_record(arrays))
            loss = None if metrics is None else metrics.get(LOSS_KEY)
            rounds.record(round_id, {
                "kernel": kernel, "round": replies.server_round,
                "loss": None if loss is None or not math.isfinite(float(loss)) else float(loss),  # type: ignore[arg-type]
                "examples": sum(e["examples"] for e in replies.edges_in),
                "edges_in": replies.edges_in, "edges_out": replies.edges_out,
                "averaged": arrays is not None,
            })  # fmt: skip

        strategy = ExactFedAvg(
            frozen=to_record(a),
            allowed=enrol.allowed_nodes,
            min_edges=row.min_edges,
            fraction=settings.FLOWER_FRACTION,
            wait_s=settings.FLOWER_WAIT_S,
            on_round=on_round,
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=to_record(b),
            num_rounds=row.rounds,
            timeout=settings.FLOWER_ROUND_TIMEOUT_S,
            train_config=config,
        )
        if result.arrays is None or not len(result.arrays):
            averaged[kernel] = {"promoted": False, "reason": "no edge returned an update",
                                "start": name}  # fmt: skip
            continue
        mean_b = from_record(result.arrays)
        adapter = ffa.assemble(trunk.cfg, lora, a, mean_b)
        edges = evaluate(grid, contributors, kernel, config, (a, b, mean_b))
        averaged[kernel] = (adapter, edges)
    rounds.gating(round_id)
    outcome.finish(round_id, averaged, trunk)
    prune_round_dirs()
