"""Serving throughput: a live server (`qig up`, embedded mode) with a tiny trained model
(`constellation.engine.tiny`); one streaming `/api/generate` client, then 8 at once; the engine
alone in-process on the same model, taking turns with the server.

python -m bench.serve [--tokens 128] [--repeats 5]      # last line: one JSON object

Keys: single_stream_tokens_per_s, concurrent8_tokens_per_s, engine_tokens_per_s_bs1 (the direct
decode loop, `Constellation.reply`), http_overhead (1 − single ÷ engine), ttft_ms_p50 (every
stream's), ttft_ms_p50_concurrent8 (the 8 concurrent streams' only), json_schema_overhead_bs1 and
_bs8 (tokens/s of greedy requests under a nested JSON schema's grammar ÷ tokens/s of the same
requests without one, as many tokens each, 1 and 8 submitted at once to the engine's scheduler)
and json_schema_overhead (the lower of the two). Details: engine_scheduler_tokens_per_s_bs1 (one
request through the continuous-batching scheduler's thread), scheduler_vs_direct,
concurrent8_vs_single, engine_ttft_ms_p50_concurrent8 (8 requests submitted at once to the
engine's scheduler, submission to first token: the engine's share of the server's TTFT) and
every repeat's figures. Tokens/s count every generated token over the whole request (prefill
and time to first token included), the same way for the engine; each figure is the best of its
repeats, but the TTFTs (the median of every repeat's streams) and json_schema_overhead (the
median of the repeats' ratios). The engine runs on the product's intra-op threads
(`constellation.inference.threads()`), as the server does."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx

from .common import emit
from .product import live_product

PROMPT = "The socket module provides access to the BSD socket interface"
SCHEMA: dict[str, Any] = {  # nested, with free strings: what a model writes decides the length
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "role": {"enum": ["MEMORY", "REASONING", "ACTION"]},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "owner": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
            "required": ["id", "email"],
        },
        "notes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "role", "score", "tags", "owner", "notes"],
}


def product(data_dir: Path, timeout: float = 120) -> AbstractContextManager[str]:
    """The real product with no bootstrap training (the bench trains its own tiny model)."""
    return live_product(data_dir, {"QIG_BOOTSTRAP": "0"}, timeout)


def stream_once(
    client: httpx.Client, base: str, model: str, tokens: int
) -> tuple[int, float, float]:
    """(tokens generated, seconds, seconds to first token) of one streamed generate, on the
    client's kept-alive connection (as the ollama clients do)."""
    body = {
        "model": model,
        "prompt": PROMPT,
        "options": {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0},
    }
    began = time.perf_counter()
    first = None
    count = 0
    with client.stream("POST", base + "/api/generate", json=body, timeout=120) as response:
        for line in response.iter_lines():
            item = json.loads(line)
            if first is None:
                first = time.perf_counter()
            if item.get("done"):
                count = int(item["eval_count"])
    return count, time.perf_counter() - began, (first or began) - began


class Engine:
    """The same model in-process: one request through `Constellation.reply` (the engine's
    direct decode loop) and through the continuous-batching `Scheduler` the server uses."""

    def __init__(self, models: Path, kernel: int) -> None:
        import django

        from constellation.engine import (
            Constellation,
            Coordizer,
            default_inference_dtype,
            load_adapter,
            load_trunk,
            use_threads,
        )
        from constellation.engine.grammar import Grammars

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
        django.setup()  # constellation.inference reads the model catalogue (Django models)
        from constellation.inference import threads

        self.threads = threads()  # the product's intra-op threads, here too
        use_threads(self.threads)

        self.c = Constellation(
            load_trunk(models / "trunk", dtype=default_inference_dtype("cpu")),
            Coordizer.load(models / "coordizer"),
        )
        self.c.load_adapter(kernel, load_adapter(models / "kernels" / str(kernel))[0])
        self.kernel = kernel
        self.scheduler = self.c.scheduler(max_batch=8, threads=self.threads)
        coord = self.c.coordizer
        self.grammars = Grammars(coord.tokenizer, self.c.trunk.cfg.vocab_size, coord.eot_id)

    def reply(self, tokens: int) -> float:
        """Tokens/s of one greedy reply through the direct decode loop."""
        opts = {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0}
        began = time.perf_counter()
        count = sum(len(c.token_ids) for c in self.c.reply(PROMPT, opts, kernel=self.kernel))
        return count / (time.perf_counter() - began)

    def scheduled(self, tokens: int) -> float:
        """Tokens/s of the same request through the scheduler's background thread (waited for
        once, as the server's streams are handed their tokens in batches, not one by one)."""
        from constellation.engine import Request, SamplingOptions

        opts = {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0}
        ids = self.c.coordizer.encode(PROMPT)
        began = time.perf_counter()
        ticket = self.scheduler.submit(
            Request(ids, [(self.kernel, 1.0)], SamplingOptions.from_ollama(opts))
        )
        ticket.wait()
        return len(ticket.tokens) / (time.perf_counter() - began)

    def first_tokens(self, tokens: int, batch: int = 8) -> list[float]:
        """Milliseconds from submission to first token of `batch` greedy requests submitted to
        the scheduler at once (in-process: the engine's share of the server's figure)."""
        from constellation.engine import Request, SamplingOptions

        opts = {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0}
        ids = self.c.coordizer.encode(PROMPT)
        firsts: list[float] = []

        def timer(submitted: float) -> Callable[[int | None], None]:
            heard: list[float] = []

            def on_token(token: int | None) -> None:  # the scheduler's thread, as it emits
                if not heard:
                    heard.append(time.perf_counter())
                    firsts.append((heard[0] - submitted) * 1000)

            return on_token

        tickets = []
        for _ in range(batch):
            submitted = time.perf_counter()
            request = Request(ids, [(self.kernel, 1.0)], SamplingOptions.from_ollama(opts))
            tickets.append(self.scheduler.submit(request))
            tickets[-1].listen(timer(submitted))
        for ticket in tickets:
            ticket.wait()
        return firsts

    def batch(self, tokens: int, batch: int, schema: dict[str, Any] | None) -> tuple[float, int]:
        """(tokens/s, fewest tokens of a request) of `batch` identical greedy requests submitted
        to the scheduler at once, each under a grammar of its own for `schema` when one is
        given (compiled in the timed span, as the server compiles one per request)."""
        from constellation.engine import Request, SamplingOptions

        opts = {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0}
        ids = self.c.coordizer.encode(PROMPT)
        began = time.perf_counter()
        tickets = []
        for _ in range(batch):
            grammar = self.grammars.constraint(schema) if schema is not None else None
            request = Request(
                ids, [(self.kernel, 1.0)], SamplingOptions.from_ollama(opts), grammar=grammar
            )
            tickets.append(self.scheduler.submit(request))
        for ticket in tickets:
            ticket.wait()
        counts = [len(ticket.tokens) for ticket in tickets]
        return sum(counts) / (time.perf_counter() - began), min(counts)

    def schema_overhead(self, tokens: int, batch: int, repeats: int) -> dict[str, Any]:
        """Tokens/s with `SCHEMA` ÷ without, at `batch`: each repeat runs the constrained
        requests, then the same requests unconstrained for as many tokens as they produced (a
        grammar row stops when its document is whole); the median of the repeats' ratios (each
        pair runs back to back, so a busy machine disturbs both sides of it alike)."""
        self.batch(8, batch, SCHEMA)  # the vocabulary is read for the grammars once
        constrained, plain, lengths = [], [], []
        for _ in range(repeats):
            rate, produced = self.batch(tokens, batch, SCHEMA)
            constrained.append(rate)
            plain.append(self.batch(produced, batch, None)[0])
            lengths.append(produced)
        return {
            "ratio": round(
                statistics.median(w / p for w, p in zip(constrained, plain, strict=True)), 3
            ),
            "with_all": [round(x) for x in constrained],
            "without_all": [round(x) for x in plain],
            "tokens": lengths,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from constellation.engine.tiny import ADAPTER_KERNEL, make_trained_model

    data_dir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    models = make_trained_model(data_dir)
    model = f"qig-kernel-{ADAPTER_KERNEL}-memory"
    engine = Engine(models, ADAPTER_KERNEL)
    engine.scheduler.start()
    with product(data_dir) as base:
        one = httpx.Client()
        clients = [httpx.Client() for _ in range(8)]
        for client in (one, *clients):
            stream_once(client, base, model, 8)  # load, warm up and connect
        engine.reply(8)
        engine.scheduled(8)
        schema = {bs: engine.schema_overhead(args.tokens, bs, args.repeats) for bs in (1, 8)}
        # The engine and the server take turns, so a busy machine disturbs both alike;
        # each figure is the best of its repeats (the least disturbed).
        singles, ttfts, direct, scheduled, engine_ttfts = [], [], [], [], []
        for _ in range(args.repeats):
            direct.append(engine.reply(args.tokens))
            scheduled.append(engine.scheduled(args.tokens))
            engine_ttfts += engine.first_tokens(args.tokens)
            count, seconds, ttft = stream_once(one, base, model, args.tokens)
            singles.append(count / seconds)
            ttfts.append(ttft * 1000)
        results: list[tuple[int, float, float]] = []
        best8, ttfts8 = 0.0, []
        for _ in range(args.repeats):
            results.clear()

            def run(client: httpx.Client) -> None:
                results.append(stream_once(client, base, model, args.tokens))

            threads = [threading.Thread(target=run, args=(c,)) for c in clients]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - began
            best8 = max(best8, sum(r[0] for r in results) / wall)
            ttfts8 += [r[2] * 1000 for r in results]
    ttfts += ttfts8
    engine.scheduler.stop()
    single, best_direct, best_scheduled = max(singles), max(direct), max(scheduled)
    emit(
        {
            "single_stream_tokens_per_s": round(single, 1),
            "concurrent8_tokens_per_s": round(best8, 1),
            "engine_tokens_per_s_bs1": round(best_direct, 1),
            "http_overhead": round(1 - single / best_direct, 3),
            "ttft_ms_p50": round(statistics.median(ttfts), 2),
            "ttft_ms_p50_concurrent8": round(statistics.median(ttfts8), 2),
            "json_schema_overhead_bs1": schema[1]["ratio"],
            "json_schema_overhead_bs8": schema[8]["ratio"],
            "json_schema_overhead": min(schema[1]["ratio"], schema[8]["ratio"]),
        },
        {
            "model": "tiny preset (hidden 128, 4 layers), vocab 512, 1 adapter",
            "threads": engine.threads,
            "tokens": args.tokens,
            "repeats": args.repeats,
            "concurrent8_vs_single": round(best8 / single, 2),
            "engine_scheduler_tokens_per_s_bs1": round(best_scheduled, 1),
            "scheduler_vs_direct": round(best_scheduled / best_direct, 3),
            "http_overhead_vs_scheduler": round(1 - single / best_scheduled, 3),
            "single_stream_tokens_per_s_all": [round(x) for x in singles],
            "engine_tokens_per_s_bs1_all": [round(x) for x in direct],
            "ttft_ms_concurrent8_all": [round(x, 1) for x in ttfts8],
            "engine_ttft_ms_p50_concurrent8": round(statistics.median(engine_ttfts), 2),
            "engine_ttft_ms_concurrent8_all": [round(x, 1) for x in engine_ttfts],
            "json_schema_bs1": schema[1],
            "json_schema_bs8": schema[8],
        },
    )


if __name__ == "__main__":
    main()
