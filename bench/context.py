"""How long a context the bootstrap trunk can serve, and what a longer one costs to train.

The `tiny` preset serves `max_seq_len` positions; the bootstrap pretrains it on windows of
`seq_len` tokens (learning/bootstrap.py). RoPE has no position weights, so a longer window at
serving costs only KV-cache memory; what it may cost is quality at positions the training never
reached. This pretrains the bootstrap's trunk (the `tiny` preset, batch 8, a coordizer of the
bootstrap's vocabulary on a slice of the bootstrap corpus) for the same number of steps at each
training window, then reads the held-out loss per position bucket over 1024-token windows: how
well each serves a long prompt. Training time per step is timed interleaved (the machine is
noisy), and the KV-cache memory of the serving windows is computed.

python -m bench.context                 # last line: one JSON object
python -m bench.context --steps 400 --windows 128 256 512
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from constellation.engine.config import trunk_preset
from constellation.engine.coordizer import Coordizer, CoordizerConfig
from constellation.engine.corpus import CorpusConfig, build_corpus
from constellation.engine.data import TokenStream
from constellation.engine.model import Trunk
from constellation.engine.trainer import TrainConfig, Trainer

from .common import emit

EVAL_LEN = 1024
BUCKETS = ((0, 128), (128, 256), (256, 512), (512, 1024))


def position_losses(trunk: Trunk, stream: TokenStream, windows: int) -> dict[str, float]:
    """Mean cross-entropy per position bucket over `windows` held-out windows of EVAL_LEN."""
    trunk.eval()
    sums = torch.zeros(EVAL_LEN - 1, dtype=torch.float64)
    n = 0
    ids = torch.from_numpy(stream.ids)
    with torch.inference_mode():
        for start in range(0, len(ids) - EVAL_LEN, EVAL_LEN):
            x = ids[start : start + EVAL_LEN][None]
            logits = trunk(x[:, :-1]).logits[0].float()
            loss = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            sums += loss.double()
            n += 1
            if n == windows:
                break
    mean = sums / max(n, 1)
    return {f"{a}-{b}": round(float(mean[a : b - 1].mean()), 3) for a, b in BUCKETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--windows", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--corpus-mb", type=float, default=1.0)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--eval-windows", type=int, default=24)
    args = parser.parse_args()
    torch.manual_seed(0)
    docs = build_corpus(CorpusConfig(max_bytes=int(args.corpus_mb * 1e6)))
    coord = Coordizer.train(docs, CoordizerConfig(vocab_size=args.vocab))
    stream = TokenStream.from_examples(docs, coord.encode, coord.eot_id)
    train, held_out = stream.split(0.1)
    cfg = replace(trunk_preset("tiny", vocab_size=coord.vocab_size), max_seq_len=EVAL_LEN)
    trunks = {w: Trunk(cfg) for w in args.windows}
    trainers = {
        w: Trainer(
            trunks[w],
            TrainConfig(
                mode="pretrain", steps=args.steps, batch_size=8, seq_len=w, metrics_every=10**6
            ),
            train,
        )
        for w in args.windows
    }
    step_s: dict[int, list[float]] = {w: [] for w in args.windows}
    chunk = 25
    for done in range(0, args.steps, chunk):  # interleaved, so load on the machine hits all alike
        for w in args.windows:
            t0 = time.perf_counter()
            trainers[w].fit(max_steps=chunk)
            step_s[w].append((time.perf_counter() - t0) / min(chunk, args.steps - done))
    result: dict[str, object] = {"steps": args.steps, "vocab": coord.vocab_size}
    per_layer = 2 * cfg.hidden * 4  # keys and values per position, fp32 (the CPU cache dtype)
    for w in args.windows:
        losses = position_losses(trunks[w], held_out, args.eval_windows)
        ms = statistics.median(step_s[w]) * 1000
        print(f"seq_len {w:4d}: {ms:7.1f} ms/step (median of {len(step_s[w])} chunks)  {losses}")
        result[f"step_ms_seq{w}"] = round(ms, 1)
        result[f"heldout_loss_by_position_seq{w}"] = losses
    for ctx in (256, 1024, 2048):
        mib = per_layer * cfg.n_layers * ctx * 8 / 2**20
        result[f"kv_cache_mib_batch8_ctx{ctx}"] = round(mib, 1)
    emit(result)


if __name__ == "__main__":
    main()
