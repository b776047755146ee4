"""Learning from use does no harm: a fresh tiny node learns one distinctive document through the
REST API, then answers questions about it with the kernels that learned it and everything else
exactly as before (issue 12, "Benchmark"; docs/training.md, "Benchmark: learning").

    python -m bench.learning            # last line: one JSON object (~5 min on 2 idle CPU cores)
    python -m bench.learning --steps 150 --learning-rate 1e-3   # the job through the jobs API

All of it goes through the real product (`qig up`, embedded mode, loopback, its own data dir):

1. A fresh tiny node makes itself, as a new install does: its bootstrap coordizer and pretrain
   jobs (`QIG_BOOTSTRAP=1`; a small bootstrap: vocabulary `--vocab` 2048, `--pretrain-steps`
   200 of the `tiny` preset, the 1 MB bootstrap corpus). The bench waits until both completed,
   so the trunk stays the same for the rest of the run.
2. 50 unrelated prompts are answered greedily (`/api/generate` on `qig-constellation:latest`,
   temperature 0, `num_predict` 16, seed 1): 40 docstring openings of installed packages'
   documents beyond the node's bootstrap corpus, and 10 general sentences.
3. A distinctive document (`document()`: the tide-archives of an invented archipelago, invented
   names and facts, ~66 kB, generated the same every time — nothing like the Python docstrings
   the node was bootstrapped on) is uploaded by the node's admin with `train=true`, and the
   adapter job it queued (the product's default hyperparameters) is polled to its end. With
   `--steps` / `--learning-rate` the upload is stored without training and the same job — its
   dataset, no target kernels, so the kernels it routed to — is queued through
   `POST /api/v1/jobs/` with those hyperparameters.
4. 50 questions about the document are asked — runs of `--sentences` (3) consecutive sentences of
   the chunks the job held out (the product's own deterministic split, `learning.datasets.
   split_records` on the upload's record; the job's `own_chunks` confirms the count) — and the
   50 unrelated prompts again.

Keys: `route_precision` (the share of the questions answered by a kernel the job trained, within
its radius: each answer's `route`, which the interactions API's `kernel`/`routed` must agree
with), `hijack_rate` (the share of unrelated prompts answered by those kernels), `unchanged_rate`
(unrelated greedy answers identical to those before the upload), `heldout_loss_drop` (1 −
own_after / own_before: the loss on the document's held-out chunks as the job recorded it,
averaged over the kernels it promoted — the versions that serve now; 0 when it promoted none,
since the previous versions keep serving) and `general_loss_change` (served_after /
served_before − 1 over the same kernels: the general held-out loss as served, the figure the
promotion gate decides on). The job's means over all its kernels, promoted or not, and the
general loss with the adapter on all text (the gate's backstop) are details. Goals, printed with
the figures and not asserted: route_precision ≥ 0.9, hijack_rate ≤ 0.05, unchanged_rate ≥ 0.95,
heldout_loss_drop ≥ 0.3, general_loss_change ≤ +0.02.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from .common import emit
from .product import live_product

MODEL = "qig-constellation:latest"
GOALS = {
    "route_precision": (">=", 0.9),
    "hijack_rate": ("<=", 0.05),
    "unchanged_rate": (">=", 0.95),
    "heldout_loss_drop": (">=", 0.3),
    "general_loss_change": ("<=", 0.02),
}
N_QUESTIONS = N_UNRELATED = 50
FINISHED = ("completed", "failed", "cancelled")


# ---- the document -------------------------------------------------------------------------------
def options(text: str) -> list[str]:
    return text.split("|")


PLACES = options(
    "Vel Quorra|Thessaline Reach|Brimwick Shoal|Ossarine Deep|Kelvault Isle|the Marrowgate|"
    "Dunsquall|Yarrowmere|Hollin Skerry|Zephyrine Sound"
)
KEEPERS = options(
    "Archivist Mela Quorvane|Tidewarden Osk Brennagh|Old Fennick Thrale|"
    "Cartographer Ilse Vantorrow|the Sisters of the Ninth Ebb|Harbourmother Yune|"
    "Brother Calloway Spindrel|the Guild of Lanternwrights|Skipper Thaddic Moor|"
    "the Quillmere Conclave"
)
DEVICES = options(
    "tidal clock|brass orrery of currents|glimmerstone lantern|kelp loom|drowned bell|"
    "salt ledger|heron compass|ebb harp|pearl sextant|moonwater cistern"
)
EVENTS = options(
    "the spring flood|the Long Slack|the ninth ebb|the Festival of Drowned Bells|"
    "the grey neap|the Vellish solstice|the migration of the copper herons|"
    "the Night of Low Lanterns|the Thessaline storm season|the first frost tide"
)
MATERIALS = options(
    "glimmerstone|tidebrass|sea-amber|driftoak|heron bone|kelp silk|moonwater glass|"
    "black coral|salt iron|pearl ash"
)
ACTS = options(
    "wind the clocks backwards|sound the drowned bells|light a second lantern|"
    "speak the names of the sunken towns|weigh the salt ledgers|fish with silver hooks|"
    "open the moonwater cisterns|cross the Marrowgate after dusk|burn driftoak|"
    "tune an ebb harp"
)
UNITS = options("fathoms|tide-marks|heron-lengths|bell-strokes|ebbs")
NUMBERS = options("three|seven|nine|eleven|forty|twelve")
TEMPLATES = [
    "The {device} of {place} was cast from {material} by {keeper}.",
    "{keeper} winds the {device} of {place} every {n} {unit}.",
    "During {event}, the people of {place} never {act}.",
    "In {place} it is said that the {device} falls silent before {event}.",
    "The {device} measures the tide in {unit}, and in {place} one {unit_one} is {n} {unit2}.",
    "{keeper} keeps the salt ledgers of {place} in a chest of {material}.",
    "Every child of {place} learns to {act} before {event}.",
    "The archive at {place} holds {n} ledgers bound in {material}.",
    "When {event} comes, {keeper} carries the {device} to {place}.",
    "{keeper} forbade anyone to {act} in {place} after the flood of year {year}.",
    "The tide at {place} rose {n} {unit} during {event} of year {year}.",
    "Travellers from {place} trade {material} for the {device} of {place2}.",
]


def document(seed: int = 12, paragraphs: int = 120) -> str:
    """The distinctive document: paragraphs of 5–7 sentences about the tide-archives of an
    invented archipelago (invented names, devices, customs and numbers), the same every time."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        place = rng.choice(PLACES)
        lines = []
        for _ in range(rng.randint(5, 7)):
            unit = rng.choice(UNITS)
            line = rng.choice(TEMPLATES).format(
                device=rng.choice(DEVICES),
                place=place if rng.random() < 0.7 else rng.choice(PLACES),
                place2=rng.choice(PLACES),
                keeper=rng.choice(KEEPERS),
                event=rng.choice(EVENTS),
                material=rng.choice(MATERIALS),
                act=rng.choice(ACTS),
                n=rng.choice(NUMBERS),
                unit=unit,
                unit_one=unit.removesuffix("s"),
                unit2=rng.choice([u for u in UNITS if u != unit]),
                year=rng.randint(300, 990),
            )
            lines.append(line[0].upper() + line[1:])
        out.append(" ".join(lines))
    return "\n\n".join(out) + "\n"


def sentences(text: str) -> list[str]:
    return [s for s in (" ".join(p.split()) for p in re.split(r"(?<=\.)\s+", text)) if s]


def questions(held_out: list[str], per: int, count: int) -> list[str]:
    """`count` questions about the document: runs of `per` consecutive sentences of a held-out
    chunk (every start position, then `count` of them evenly spaced)."""
    runs = []
    for chunk in held_out:
        lines = sentences(chunk)
        runs += [" ".join(lines[i : i + per]) for i in range(max(1, len(lines) - per + 1))]
    if len(runs) <= count:
        return runs
    return [runs[round(i * (len(runs) - 1) / (count - 1))] for i in range(count)]


def held_out_chunks(text: bytes, data_dir: Path) -> list[str]:
    """The chunks an adapter job holds out of this upload: the product's own split of the
    upload's record (`uploads.extract` → `learning.datasets.split_records`)."""
    os.environ["QIG_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Django's logging config set it to INFO
    from learning.datasets import split_records
    from uploads.extract import extract_plain

    split = split_records([{"text": extract_plain(text)}])
    return [str(c["text"]) if isinstance(c, dict) else str(c) for c in split.held_out]


# ---- the unrelated prompts ----------------------------------------------------------------------
GENERAL = [
    "Return the number of elements in the list.",  # the example
    "How do I open a socket and read from it?",
    "Split a string on commas and strip the spaces.",
    "What does the garbage collector do with reference cycles?",
    "Write a function that sorts a dictionary by value.",
    "The weather tomorrow will be sunny with a light breeze.",
    "Explain how a hash table handles collisions.",
    "My train leaves at seven, so I will have breakfast early.",
    "Convert a date string to a datetime object.",
    "Please summarise the meeting notes in three bullet points.",
]


def unrelated(count: int, seen: list[str], corpus_mb: float) -> list[str]:
    """`count` − 10 docstring openings (the first line of ≥ 4 words of installed packages'
    documents that are not in the node's bootstrap corpus `seen`), then the 10 general sentences."""
    from constellation.engine.corpus import CorpusConfig, build_corpus

    known = set(seen)
    wanted = count - len(GENERAL)
    found: list[str] = []
    for doc in build_corpus(CorpusConfig(max_bytes=int((corpus_mb + 0.5) * 1e6))):
        if doc in known:
            continue
        line = next((x.strip() for x in doc.splitlines() if len(x.split()) >= 4), "")
        if line and len(line) < 200 and line not in found:
            found.append(line)
        if len(found) == wanted:
            break
    return found + GENERAL


# ---- the node -----------------------------------------------------------------------------------
def signin(base: str, data_dir: Path) -> httpx.Client:
    """The node's admin (the password `qig up` generated and kept in the data dir)."""
    password = (data_dir / "admin_password").read_text().strip()
    client = httpx.Client(base_url=base, timeout=30)
    token = client.get("/api/v1/auth/csrf/").json()["csrfToken"]
    response = client.post(
        "/api/v1/auth/login/",
        json={"username": "admin", "password": password},
        headers={"X-CSRFToken": token, "Referer": base + "/"},
    )
    response.raise_for_status()
    return client


def post(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    return client.post(path, headers={"X-CSRFToken": client.cookies["csrftoken"]}, **kwargs)


def pages(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = path
    while url:
        page = client.get(url).json()
        rows += page["results"]
        url = page["next"]
    return rows


def wait_jobs(client: httpx.Client, ids: list[int] | None, timeout: float) -> list[dict[str, Any]]:
    """Poll until the jobs (None: every job there is, at least one) have finished."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [j for j in pages(client, "/api/v1/jobs/") if ids is None or j["id"] in ids]
        if jobs and all(j["status"] in FINISHED for j in jobs):
            return sorted(jobs, key=lambda j: j["id"])
        if time.monotonic() > deadline:
            state = [(j["id"], j["kind"], j["status"], j["progress"]) for j in jobs]
            raise RuntimeError(f"jobs not finished in {timeout:.0f} s: {state}")
        time.sleep(1)


def generate(client: httpx.Client, prompt: str, tokens: int) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "stream": False,
        "options": {"temperature": 0, "num_predict": tokens, "seed": 1},
    }
    response = client.post("/api/generate", json=body, timeout=120)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def answered_by(route: dict[str, Any] | None, kernels: set[int]) -> bool:
    """One of `kernels` answered (with its adapter: within its radius)."""
    if not route or route.get("kernel") not in kernels:
        return False
    return route.get("answered_by", "kernel") == "kernel"


def agreeing(stored: list[dict[str, Any]], asked: list[tuple[str, dict[str, Any]]]) -> int:
    """How many answers the interactions API records with the same kernel and reason (the n-th
    interaction of a prompt is its n-th request)."""
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(stored, key=lambda r: r["id"]):
        by_prompt[row["prompt"]].append(row)
    seen: dict[str, int] = defaultdict(int)
    agree = 0
    for prompt, answer in asked:
        rows = by_prompt.get(prompt, [])
        n = seen[prompt]
        seen[prompt] += 1
        if n < len(rows):
            head = (rows[n]["routed"] or [{}])[0]
            route = answer.get("route") or {}
            agree += rows[n]["kernel"] == route.get("kernel") == head.get("kernel") and head.get(
                "reason"
            ) == route.get("reason")
    return agree


def rate(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 3) if flags else float("nan")


def change(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after / before - 1


def mean(figures: list[dict[str, Any]], name: str) -> float | None:
    values = [f[name] for f in figures if f.get(name) is not None]
    return sum(values) / len(values) if values else None


def median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return round(known[len(known) // 2], 3) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=16, help="num_predict of every answer")
    parser.add_argument("--sentences", type=int, default=3, help="sentences per question")
    parser.add_argument("--vocab", type=int, default=2048, help="the bootstrap coordizer's")
    parser.add_argument("--pretrain-steps", type=int, default=200, help="the bootstrap trunk's")
    parser.add_argument("--corpus-mb", type=float, default=1.0, help="the bootstrap corpus")
    parser.add_argument("--steps", type=int, help="adapter steps (jobs API; default: train=true)")
    parser.add_argument("--learning-rate", type=float, help="adapter rate (jobs API, as --steps)")
    parser.add_argument("--timeout", type=float, default=1200, help="for each wait on jobs")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args()
    began = time.monotonic()
    timings: dict[str, float] = {}

    data_dir = Path(tempfile.mkdtemp(prefix="bench-learning-"))
    text = document().encode()
    held = held_out_chunks(text, data_dir)
    asked = questions(held, args.sentences, N_QUESTIONS)
    one_sentence = questions(held, 1, N_QUESTIONS)
    requests: list[tuple[str, dict[str, Any]]] = []  # (prompt, answer), in the order asked

    def ask(client: httpx.Client, prompts: list[str]) -> list[dict[str, Any]]:
        answers = [generate(client, p, args.tokens) for p in prompts]
        requests.extend(zip(prompts, answers, strict=True))
        return answers

    env = {
        "QIG_BOOTSTRAP": "1",
        "QIG_BOOTSTRAP_PRESET": "tiny",
        "QIG_BOOTSTRAP_VOCAB": str(args.vocab),
        "QIG_BOOTSTRAP_STEPS": str(args.pretrain_steps),
        "QIG_BOOTSTRAP_CORPUS_MB": str(args.corpus_mb),
    }
    with live_product(data_dir, env) as base:
        client = signin(base, data_dir)
        t = time.monotonic()
        bootstrap = wait_jobs(client, None, args.timeout)
        timings["bootstrap_s"] = time.monotonic() - t
        if any(j["status"] != "completed" for j in bootstrap):
            raise RuntimeError(f"bootstrap: {[(j['kind'], j['status']) for j in bootstrap]}")
        corpus = data_dir / "models" / "bootstrap-corpus.jsonl"
        seen = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
        others = unrelated(N_UNRELATED, seen, args.corpus_mb)

        t = time.monotonic()
        before = ask(client, others)
        timings["before_s"] = time.monotonic() - t

        t = time.monotonic()
        chosen = {"steps": args.steps, "learning_rate": args.learning_rate}
        chosen = {k: v for k, v in chosen.items() if v is not None}
        form = {"train": "false" if chosen else "true"}
        files = {"file": ("vel-tide-archives.txt", text, "text/plain")}
        uploaded = post(client, "/api/v1/uploads/", files=files, data=form)
        if uploaded.status_code != 201:
            raise RuntimeError(f"upload: {uploaded.status_code} {uploaded.text}")
        upload = uploaded.json()["results"][0]["upload"]
        queued = uploaded.json()["job"]
        if chosen:  # the job train=true queues, with these hyperparameters
            body = {"kind": "adapter", "datasets": [upload["id"]], "hyperparameters": chosen}
            made = post(client, "/api/v1/jobs/", json=body)
            if made.status_code != 201:
                raise RuntimeError(f"job: {made.status_code} {made.text}")
            queued = made.json()
        if not queued:
            raise RuntimeError(f"upload queued no job: {uploaded.json()['job_error']}")
        (job,) = wait_jobs(client, [queued["id"]], args.timeout)
        timings["job_s"] = time.monotonic() - t
        if job["status"] != "completed":
            raise RuntimeError(f"job {job['id']} {job['status']}: {job['error']}")
        evaluation = job["evaluation"] or {}
        trained = set(job["target_kernels"])

        t = time.monotonic()
        about = ask(client, asked)
        about_one = ask(client, one_sentence)
        after = ask(client, others)
        timings["after_s"] = time.monotonic() - t
        deadline = time.monotonic() + 30  # interactions are stored just after each response
        while len(stored := pages(client, "/api/v1/interactions/")) < len(requests):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        client.close()

    same = [b["response"] == a["response"] for b, a in zip(before, after, strict=True)]
    rows: list[dict[str, Any]] = evaluation.get("kernels", [])
    live = [k["heldout"] for k in rows if k.get("promoted")]  # the versions serving now
    own_change = change(mean(live, "own_before"), mean(live, "own_after")) if live else 0.0
    served = "served" if all(h.get("served_before") is not None for h in live) else "general"
    general_change = (
        change(mean(live, f"{served}_before"), mean(live, f"{served}_after")) if live else 0.0
    )
    result: dict[str, Any] = {
        "route_precision": rate([answered_by(a.get("route"), trained) for a in about]),
        "hijack_rate": rate([answered_by(a.get("route"), trained) for a in after]),
        "unchanged_rate": rate(same),
        "heldout_loss_drop": None if own_change is None else round(0.0 - own_change, 3),
        "general_loss_change": None if general_change is None else round(general_change, 4),
    }
    met = {}
    for key, (op, goal) in GOALS.items():
        value = result[key]
        met[key] = value is not None and (value >= goal if op == ">=" else value <= goal)
    kernels = {
        k["kernel"]: {
            "promoted": k.get("promoted"),
            "reason": k.get("reason"),
            "radius": k.get("radius"),
            "calibration": k.get("calibration"),
            "heldout": k.get("heldout"),
        }
        for k in rows
    }
    own = (evaluation.get("own_before"), evaluation.get("own_after"))
    general = (evaluation.get("general_before"), evaluation.get("general_after"))
    on_all = change(*general)
    trained_drop = change(*own)
    emit(
        result,
        {
            "goals": {k: f"{op} {goal}" for k, (op, goal) in GOALS.items()},
            "met": met,
            "job": job["id"],
            "target_kernels": sorted(trained),
            "promoted": evaluation.get("promoted"),
            "not_promoted": evaluation.get("not_promoted"),
            # the job's means over all its kernels, promoted or not
            "own_heldout_loss": own,
            "heldout_loss_drop_trained": None
            if trained_drop is None
            else round(0.0 - trained_drop, 3),
            "general_loss_as_served": (
                evaluation.get("served_before"),
                evaluation.get("served_after"),
            ),
            "general_loss_adapter_on_all": general,
            "general_loss_change_adapter_on_all": None if on_all is None else round(on_all, 4),
            "heldin_loss": (evaluation.get("heldin_before"), evaluation.get("heldin_after")),
            "kernels": kernels,
            "document_bytes": len(text),
            "held_out_chunks": len(held),
            "job_own_chunks": sorted({(k.get("heldout") or {}).get("own_chunks") for k in rows}),
            "upload_routed": upload.get("routed"),
            "questions": len(asked),
            "sentences_per_question": args.sentences,
            "route_precision_1_sentence": rate(
                [answered_by(a.get("route"), trained) for a in about_one]
            ),
            "question_distance_median": median(
                [(a.get("route") or {}).get("distance") for a in about]
            ),
            "unrelated_nearest_trained_median": median(
                [((a.get("route") or {}).get("nearest") or {}).get("distance") for a in after]
            ),
            "unrelated": len(others),
            "distinct_unrelated_answers": len({b["response"] for b in before}),
            "changed": [
                [p, b["response"], a["response"], a.get("route")]
                for p, b, a, s in zip(others, before, after, same, strict=True)
                if not s
            ][:3],
            "example_question": [asked[0], about[0]["response"], about[0].get("route")],
            "example_unrelated": [others[0], after[0]["response"], after[0].get("route")],
            "interactions_agree": f"{agreeing(stored, requests)}/{len(requests)}",
            "bootstrap": {"vocab": args.vocab, "steps": args.pretrain_steps, "mb": args.corpus_mb},
            "train_true": not chosen,
            "hyperparameters": job["hyperparameters"],
            "tokens": args.tokens,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "total_s": round(time.monotonic() - began, 1),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "data_dir": str(data_dir) if args.keep else None,
        },
    )
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
