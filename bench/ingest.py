"""Upload ingestion throughput: a 50 MB generated text file through the upload pipeline.

python -m bench.ingest            # last line: one JSON object with mb_per_s and stage timings
python -m bench.ingest --mb 10    # a smaller file

The pipeline is the product's (uploads.extract + uploads.chunking + the router): read and decode
the file, tokenise it with a real coordizer, cut 256-token chunks with a 32-token overlap, compute
every chunk's basin and the document's, and route the document to its 2 nearest kernels among
the 240 E8 anchors. Database writes are not included (they depend on the database, not on this
code).

The coordizer is trained here on 1 MB of the bootstrap corpus (vocabulary 8000, the product's
default) — not timed. The text is generated from the bootstrap corpus (the installed packages'
docs, 4 MB): paragraphs drawn at random (seed 0), each with a few fresh identifiers (random
hexadecimal words) so that the vocabulary of the file keeps growing as real text's does instead
of repeating a closed set of words. The context line reports the share of distinct units, and
`tokenise_str_path_s`: the same text tokenised again through the str path (`re.split` and a dict,
the fallback of constellation/engine/bulk_encode.py), side by side with the byte-hash path that
`tokenise_s` times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from constellation.engine import (
    Coordizer,
    CoordizerConfig,
    CorpusConfig,
    build_corpus,
    bulk_encode,
    e8,
)
from constellation.engine.router import Router
from uploads import chunking
from uploads.extract import extract

from .common import emit

CHUNK_TOKENS, CHUNK_OVERLAP, ROUTE_K = 256, 32, 2


def generate(paragraphs: list[str], n_bytes: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    size = 0
    while size < n_bytes:
        words = paragraphs[int(rng.integers(len(paragraphs)))].split(" ")
        for _ in range(max(1, len(words) // 50)):  # ~2% fresh words
            words.insert(int(rng.integers(len(words) + 1)), f"{int(rng.integers(1 << 40)):x}")
        paragraph = " ".join(words) + "\n\n"
        out.append(paragraph)
        size += len(paragraph.encode("utf-8"))
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated file (MB)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    corpus = build_corpus(CorpusConfig(max_bytes=4_000_000))
    paragraphs = [p for doc in corpus for p in doc.split("\n\n") if len(p) > 40]
    sample, total = [], 0
    for doc in corpus:
        if total > 1_000_000:
            break
        sample.append(doc)
        total += len(doc)
    coordizer = Coordizer.train(sample, CoordizerConfig(vocab_size=8000))
    router = Router(dict(enumerate(e8.anchors())))
    setup_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.txt"
        path.write_text(generate(paragraphs, int(args.mb * 1e6)), encoding="utf-8")
        size = path.stat().st_size
        cpu0, t1 = time.process_time(), time.perf_counter()
        extracted = extract(path, path.name)
        t2 = time.perf_counter()
        chunks = chunking.chunk_text(coordizer, extracted.text, CHUNK_TOKENS, CHUNK_OVERLAP)
        t3 = time.perf_counter()
        kernels, distances = router.route_basins(chunks.document_basin, ROUTE_K)
        t4 = time.perf_counter()
        cpu = time.process_time() - cpu0
        # side by side: the same text tokenised through the str path (the fallback)
        t5 = time.perf_counter()
        by_str = bulk_encode.encode(coordizer, extracted.text, path="str")
        str_s = time.perf_counter() - t5
        assert by_str.size == chunks.n_tokens
    elapsed = t4 - t1
    units = bulk_encode.UNIT_BOUNDARY.split(extracted.text[:10_000_000])
    emit(
        {
            "mb_per_s": round(size / 1e6 / elapsed, 2),
            "mb": round(size / 1e6, 2),
            "seconds": round(elapsed, 2),
            "extract_s": round(t2 - t1, 2),
            "tokenise_s": round(chunks.timings["tokenise_s"], 2),
            "chunk_s": round(chunks.timings["chunk_s"], 2),
            "basins_s": round(chunks.timings["basins_s"], 2),
            "route_s": round(t4 - t3, 4),
            "chunks": len(chunks.texts),
            "tokens": chunks.n_tokens,
        },
        {
            "cpu_s": round(cpu, 2),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "distinct_units_share_first_10mb": round(len(set(units)) / max(1, len(units)), 4),
            "tokenise_str_path_s": round(str_s, 2),
            "coordizer_vocab": coordizer.vocab_size,
            "chunk_tokens": CHUNK_TOKENS,
            "chunk_overlap": CHUNK_OVERLAP,
            "routed": [int(k) for k in kernels[0]],
            "distances": [round(float(d), 4) for d in distances[0]],
            "setup_s": round(setup_s, 1),
        },
    )


if __name__ == "__main__":
    main()
