"""The default routing radius (`QIG_ROUTE_RADIUS`), measured with the tiny test models.

For each distinctive document (two generated ones, as the engine's learning test writes them, and
three pages of this repository's docs, which the bootstrap corpus does not contain): every 5th
sentence is held out; the kernel the document routes to moves its anchor one adapter job's step
(the trainer's `anchor_step`) toward the basin of the rest; then the Fisher–Rao distances from that
anchor are measured, as the server routes chat prompts (`user: …\\nassistant:`), for queries of
1, 2, 3 and 5 sentences: the held-out sentences (own) against unrelated text — the opening
sentences of bootstrap-corpus documents the tiny coordizer never saw (docstring-like prompts, as in
issue 12), and the other documents' sentences.

The default is for adapters published without a calibrated radius, so it does no harm first: the
largest radius that admits at most 5% of the unrelated queries (`router.admitting`) for every
document and every query length, rounded down to 0.05. Printed with it: how much of each
document's own held-out text falls within it, and what `calibrate_radius` would give each.

    python -m bench.route_radius            # last line: one JSON object
    python -m bench.route_radius --vocab 8000   # the same with a bootstrap-sized coordizer
    python -m bench.route_radius --at 0.55      # the shares within another radius
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

from constellation.engine import Coordizer, CoordizerConfig, e8
from constellation.engine.corpus import CorpusConfig, build_corpus
from constellation.engine.geometry import fisher_rao, geodesic
from constellation.engine.router import Router, admitting, calibrate_radius
from constellation.engine.tiny import CORPUS_BYTES, coordizer, corpus
from constellation.engine.trainer import TrainConfig

from .common import emit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/design.md", "docs/uploads.md", "docs/metrics.md")
HARBOR = (
    ["Quillmere", "The zorblax lantern", "Old Maribeth Vantorre", "The copper heron"],
    ["glimmers above", "sings softly to", "drifts toward", "remembers", "guards"],
    ["the salt marsh at dusk", "seven brass bells", "a ledger of tides", "the heron's nest"],
)
FORGE = (
    ["Grubnak the smith", "The iron golem Kzar", "Ninefold Anvil", "Dvorrik"],
    ["hammers", "quenches", "tempers", "forges"],
    ["a blade of black steel", "nine glowing rivets", "the ember crown", "molten slag"],
)
HOLD_EVERY = 5
LENGTHS = (1, 2, 3, 5)  # sentences per query


def generated(seed: int, names: list[str], verbs: list[str], objects: list[str]) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(
        f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(300)
    )


def sentences(text: str, least_words: int = 4) -> list[str]:
    text = re.sub(r"`|\*|#|\|", " ", text)
    parts = re.split(r"(?<=[.!?])\s+|\n\s*\n", text)
    return [" ".join(p.split()) for p in parts if len(p.split()) >= least_words]


def groups(lines: list[str], n: int) -> list[str]:
    """Queries of n consecutive sentences (sliding by one)."""
    return [" ".join(lines[i : i + n]) for i in range(len(lines) - n + 1)]


def distances(coord: Coordizer, anchor: np.ndarray, queries: list[str]) -> np.ndarray:
    chat = [f"user: {q}\nassistant:" for q in queries]  # prompts.chat_prompt of one message
    return fisher_rao(coord.text_basins(chat), anchor)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unrelated", type=int, default=300, help="bootstrap-corpus documents")
    ap.add_argument(
        "--vocab",
        type=int,
        default=0,
        help="0: the tiny test coordizer; else train one like the bootstrap's (e.g. 8000)",
    )
    ap.add_argument("--corpus-bytes", type=int, default=1_000_000, help="with --vocab")
    ap.add_argument("--at", type=float, default=0.0, help="report shares within this radius")
    args = ap.parse_args()
    if args.vocab:
        seen = build_corpus(CorpusConfig(max_bytes=args.corpus_bytes))
        coord = Coordizer.train(seen, CoordizerConfig(vocab_size=args.vocab))
    else:
        seen, coord = list(corpus()), coordizer()
    documents = {"harbor": generated(1, *HARBOR), "forge": generated(3, *FORGE)}
    documents |= {Path(p).stem: (ROOT / p).read_text() for p in DOCS if (ROOT / p).is_file()}
    more = CorpusConfig(max_bytes=sum(len(d.encode()) for d in seen) + CORPUS_BYTES * 5)
    everything = build_corpus(more)
    assert everything[: len(seen)] == list(seen), "the corpus is built in a stable order"
    unseen = everything[len(seen) :]
    openings = [s for s in (sentences(d) for d in unseen) if s][: args.unrelated]
    split = {name: sentences(text) for name, text in documents.items()}
    everywhere = Router(dict(enumerate(e8.anchors())))
    step = TrainConfig().anchor_step
    figures: dict[str, dict[str, float | int]] = {}
    measured: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, lines in split.items():
        held = lines[::HOLD_EVERY]
        learned = [s for i, s in enumerate(lines) if i % HOLD_EVERY]
        data_basin = coord.text_basin(" ".join(learned))
        kernel = int(everywhere.route_basins(data_basin, 1)[0][0, 0])
        anchor = geodesic(e8.anchor(kernel), data_basin, step)  # one adapter job's step
        for n in LENGTHS:
            others = [q for o, ls in split.items() if o != name for q in groups(ls, n)]
            docstrings = [" ".join(s[:n]) for s in openings if len(s) >= n]
            own = distances(coord, anchor, groups(held, n))
            far = distances(coord, anchor, docstrings + others)
            measured[f"{name}/{n}"] = (own, far)
            radius = calibrate_radius(own, far)
            figures[f"{name}/{n}"] = {
                "kernel": kernel,
                "own_n": len(own),
                "own_p50": round(float(np.median(own)), 3),
                "own_p90": round(float(np.quantile(own, 0.9)), 3),
                "unrelated_n": len(far),
                "unrelated_p05": round(float(np.quantile(far, 0.05)), 3),
                "unrelated_p50": round(float(np.median(far)), 3),
                "admitting_5pct": round(admitting(far), 3),
                "calibrated": round(radius, 3),
                "own_within_calibrated": round(float(np.mean(own <= radius)), 3),
            }
    floor = min(float(f["admitting_5pct"]) for f in figures.values())
    default = math.floor(floor * 20) / 20
    at = args.at or default
    within = {
        key: {
            "own": round(float(np.mean(own <= at)), 3),
            "unrelated": round(float(np.mean(far <= at)), 3),
        }
        for key, (own, far) in measured.items()
    }
    emit(
        {
            "default_radius": default,
            "admitting_5pct_min": round(floor, 3),
            "within_radius": at,
            "within": within,
        },
        {"figures": figures, "vocab": coord.vocab_size, "anchor_step": step},
    )


if __name__ == "__main__":
    main()
