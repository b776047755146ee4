"""Serving throughput: a live server (`qig up`) with a tiny trained model; one streaming
`/api/generate` client, then 8 at once; the engine alone in-process on the same model.

python -m bench.serve [--tokens 128] [--repeats 3]      # last line: one JSON object

Keys: single_stream_tokens_per_s, concurrent8_tokens_per_s, engine_tokens_per_s_bs1,
http_overhead (1 − single ÷ engine), ttft_ms_p50. Tokens/s count every generated token over the
whole request (prefill and time to first token included), the same way for the engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from .common import emit

PROMPT = "The socket module provides access to the BSD socket interface"


def stream_once(base: str, model: str, tokens: int) -> tuple[int, float, float]:
    """(tokens generated, seconds, seconds to first token) of one streamed generate."""
    body = {
        "model": model,
        "prompt": PROMPT,
        "options": {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0},
    }
    began = time.perf_counter()
    first = None
    count = 0
    with httpx.stream("POST", base + "/api/generate", json=body, timeout=120) as response:
        for line in response.iter_lines():
            item = json.loads(line)
            if first is None:
                first = time.perf_counter()
            if item.get("done"):
                count = int(item["eval_count"])
    return count, time.perf_counter() - began, (first or began) - began


def engine_bs1(models: Path, kernel: int, tokens: int, repeats: int) -> tuple[float, float]:
    """Tokens/s of one request in-process: through `Constellation.reply` (the engine's
    single-request path) and through the continuous-batching `Scheduler` the server uses."""
    from constellation.engine import (
        Constellation,
        Coordizer,
        default_inference_dtype,
        load_adapter,
        load_trunk,
    )

    c = Constellation(
        load_trunk(models / "trunk", dtype=default_inference_dtype("cpu")),
        Coordizer.load(models / "coordizer"),
    )
    c.load_adapter(kernel, load_adapter(models / "kernels" / str(kernel))[0])
    from constellation.engine import Request, SamplingOptions

    opts = {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0}
    scheduler = c.scheduler(max_batch=8)
    scheduler.start()
    via_scheduler = 0.0
    for _ in range(repeats + 1):
        began = time.perf_counter()
        request = Request(
            c.coordizer.encode(PROMPT), [(kernel, 1.0)], SamplingOptions.from_ollama(opts)
        )
        count = len(list(scheduler.submit(request)))
        via_scheduler = max(via_scheduler, count / (time.perf_counter() - began))
    scheduler.stop()
    best = 0.0
    for _ in range(repeats + 1):  # the first is a warm-up
        began = time.perf_counter()
        count = sum(len(chunk.token_ids) for chunk in c.reply(PROMPT, opts, kernel=kernel))
        best = max(best, count / (time.perf_counter() - began))
    return best, via_scheduler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tests.inference.model import ADAPTER_KERNEL, make_trained_model
    from tests.live.product import Product

    data_dir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    models = make_trained_model(data_dir)
    model = f"qig-kernel-{ADAPTER_KERNEL}-memory"
    server = Product(data_dir).start()
    try:
        stream_once(server.base, model, 8)  # load and warm up
        singles, ttfts = [], []
        for _ in range(args.repeats):
            count, seconds, ttft = stream_once(server.base, model, args.tokens)
            singles.append(count / seconds)
            ttfts.append(ttft * 1000)
        results: list[tuple[int, float, float]] = []
        best8 = 0.0
        for _ in range(args.repeats):
            results.clear()

            def client() -> None:
                results.append(stream_once(server.base, model, args.tokens))

            threads = [threading.Thread(target=client) for _ in range(8)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - began
            best8 = max(best8, sum(r[0] for r in results) / wall)
            ttfts += [r[2] * 1000 for r in results]
    finally:
        server.stop()
    engine, engine_scheduler = engine_bs1(models, ADAPTER_KERNEL, args.tokens, args.repeats)
    single = max(singles)
    emit(
        {
            "single_stream_tokens_per_s": round(single, 1),
            "concurrent8_tokens_per_s": round(best8, 1),
            "engine_tokens_per_s_bs1": round(engine, 1),
            "http_overhead": round(1 - single / engine, 3),
            "ttft_ms_p50": round(statistics.median(ttfts), 2),
        },
        {
            "model": "tiny preset (hidden 128, 4 layers), vocab 512, 1 adapter",
            "tokens": args.tokens,
            "repeats": args.repeats,
            "concurrent8_vs_single": round(best8 / single, 2),
            "engine_scheduler_tokens_per_s_bs1": round(engine_scheduler, 1),
            "http_overhead_vs_scheduler": round(1 - single / engine_scheduler, 3),
        },
    )


if __name__ == "__main__":
    main()
