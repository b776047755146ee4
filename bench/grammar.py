"""Grammar-constrained decoding libraries on this CPU: llguidance, xgrammar, outlines-core.

For the coordizer's vocabulary (the tiny model's, or a bigger ByteLevel BPE with the same
settings trained on Python's stdlib sources), each library compiles `json` (any JSON object) and
a nested schema, then walks a real valid document token by token: the bitmask of allowed next
tokens is timed at every position (batch 1, and 8 matchers as the 8 rows of one step), as are
the token's consumption, the mask's application to a logits row in torch, and what stop needs
(completion, EOS allowed only at the end, rollback). Schemas with features a library may reject
record its exact message.

python -m bench.grammar                   # the tiny model's coordizer; last line: one JSON object
python -m bench.grammar --vocab 32000     # a 32000-token ByteLevel BPE (trained once, cached)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from constellation.engine.coordizer import EOT, Coordizer
from constellation.engine.tiny import make_trained_model

from .common import emit

CACHE = Path("var/bench-grammar")  # trained bigger vocabularies (git-ignored)
CORPUS_BYTES = 16_000_000  # of stdlib sources (all .py files, sorted) for a bigger vocabulary
WALKS = 3  # walks of the document per library at batch 1
BATCH = 8
LIBRARIES = ("llguidance", "xgrammar", "outlines-core")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 64},
        "kernel": {"type": "integer", "minimum": 0, "maximum": 239},
        "role": {"enum": ["MEMORY", "REASONING", "PERCEPTION", "ACTION"]},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "owner": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string"},
                "roles": {"type": "array", "items": {"enum": ["admin", "viewer"]}},
            },
            "required": ["id", "email"],
            "additionalProperties": False,
        },
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "string"},
                    "kind": {"enum": ["train", "promote", "rollback"]},
                    "step": {"type": "integer"},
                },
                "required": ["at", "kind", "step"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["name", "kernel", "role", "score", "active", "tags", "owner", "events"],
    "additionalProperties": False,
}
ANY_OBJECT: dict[str, Any] = {"type": "object"}  # `format: "json"`

# A schema using one feature that a library may not implement, and a document that breaks only
# that feature: a library that compiles the schema and lets the document through ignores it.
UNSUPPORTED: dict[str, tuple[dict[str, Any], Any]] = {
    "patternProperties": (
        {
            "type": "object",
            "patternProperties": {"^x-": {"type": "string"}},
            "additionalProperties": False,
        },
        {"x-a": 1},
    ),
    "if/then/else": (
        {
            "type": "object",
            "properties": {"kind": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["kind"],
            "if": {"properties": {"kind": {"const": "count"}}},
            "then": {"required": ["n"]},
        },
        {"kind": "count"},
    ),
    "recursive $ref": (
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "integer"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/node",
        },
        {"value": 1, "children": [{"value": 2, "children": [{"value": "x"}]}]},
    ),
    "not": (
        {
            "type": "object",
            "properties": {"a": {"not": {"type": "string"}}},
            "required": ["a"],
        },
        {"a": "s"},
    ),
    "uniqueItems": ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 1]),
}


def instance(i: int) -> dict[str, Any]:
    """A valid document of SCHEMA (properties in schema order, as the grammars emit them)."""
    return {
        "name": f"kernel-{i} memory of the constellation",
        "kernel": 17 + i,
        "role": ["MEMORY", "REASONING", "PERCEPTION", "ACTION"][i % 4],
        "score": 0.8125 + i / 100,
        "active": i % 2 == 0,
        "tags": ["geometry", "basin", f"v{i}"],
        "owner": {"id": 1000 + i, "email": f"ops{i}@example.org", "roles": ["admin", "viewer"]},
        "events": [
            {"at": "2026-11-21T10:00:00Z", "kind": "train", "step": 50 * (i + 1)},
            {"at": "2026-11-21T11:30:00Z", "kind": "promote", "step": 51 * (i + 1)},
        ],
    }


# ---- the vocabulary ------------------------------------------------------------------------
def tiny_coordizer_tokenizer() -> tuple[Tokenizer, str]:
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = make_trained_model(Path(tmp), steps=1)
        coord = Coordizer.load(models_dir / "coordizer")
    return coord.tokenizer, "tiny model's coordizer (constellation.engine.tiny)"


def bigger_tokenizer(vocab_size: int) -> tuple[Tokenizer, str]:
    """A ByteLevel BPE with the coordizer's settings (`Coordizer.train` without the basin
    coordinates), trained on the first CORPUS_BYTES of the stdlib's sources."""
    path = CACHE / f"bpe-{vocab_size}" / "tokenizer.json"
    source = f"ByteLevel BPE {vocab_size}, coordizer settings, stdlib sources ({path})"
    if path.is_file():
        return Tokenizer.from_file(str(path)), source
    texts, size = [], 0
    for file in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "site-packages" in file.parts:
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text)
        if size >= CORPUS_BYTES:
            break
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return tok, source


def byte_decoder() -> dict[str, int]:
    """ByteLevel's printable character → byte (GPT-2's bytes_to_unicode, inverted)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, n = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


# ---- one adapter per library ----------------------------------------------------------------
@dataclass
class Lib:
    """What the scheduler would call: compile a schema, a matcher per row, its mask, its token."""

    name: str
    compile: Callable[[dict[str, Any]], Any]  # schema → compiled grammar (raises if rejected)
    matcher: Callable[[Any], Any]  # compiled → a fresh matcher
    fill: Callable[[Any, torch.Tensor, int], None]  # matcher, bitmask (B, W), row
    fill_batch: Callable[[list[Any], torch.Tensor], None]  # the library's batch call
    consume: Callable[[Any, int], bool]
    accepting: Callable[[Any], bool]
    rollback: Callable[[Any, int], None]


def llguidance_lib(tok: Tokenizer, eot: int) -> Lib:
    import llguidance
    import llguidance.torch as llt

    lltok = llguidance.LLTokenizer(tok.to_str(), n_vocab=tok.get_vocab_size(), eos_token=eot)
    executor = llguidance.LLExecutor()

    def compile_(schema: dict[str, Any]) -> str:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema)
        matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)  # compiles the grammar
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return grammar

    def fill_batch(ms: list[Any], mask: torch.Tensor) -> None:
        llt.fill_next_token_bitmask_par(executor, [(m, i) for i, m in enumerate(ms)], mask)

    def rollback(m: Any, n: int) -> None:
        assert m.rollback(n), m.get_error()

    return Lib(
        "llguidance",
        compile_,
        lambda grammar: llguidance.LLMatcher(lltok, grammar, log_level=0),
        llt.fill_next_token_bitmask,
        fill_batch,
        lambda m, t: bool(m.consume_token(t)),
        lambda m: bool(m.is_accepting()),
        rollback,
    )


def xgrammar_lib(tok: Tokenizer, eot: int) -> Lib:
    import xgrammar

    v = tok.get_vocab_size()
    vocab = [str(tok.id_to_token(i)) for i in range(v)]
    info = xgrammar.TokenizerInfo(
        vocab, xgrammar.VocabType.BYTE_LEVEL, vocab_size=v, stop_token_ids=[eot]
    )
    compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)
    batch = xgrammar.BatchGrammarMatcher()

    def rollback(m: Any, n: int) -> None:
        m.rollback(n)

    return Lib(
        "xgrammar",
        compiler.compile_json_schema,
        xgrammar.GrammarMatcher,
        lambda m, mask, row: m.fill_next_token_bitmask(mask, row),
        batch.batch_fill_next_token_bitmask,
        lambda m, t: bool(m.accept_token(t)),
        lambda m: bool(m.is_completed()),
        rollback,
    )


def outlines_lib(tok: Tokenizer, eot: int) -> Lib:
    import outlines_core

    decode = byte_decoder()
    by_bytes: dict[bytes, list[int]] = {}
    for text, i in tok.get_vocab().items():
        if i != eot:
            by_bytes.setdefault(bytes(decode[c] for c in text), []).append(i)
    vocabulary = outlines_core.Vocabulary(eot, by_bytes)

    def compile_(schema: dict[str, Any]) -> Any:
        regex = outlines_core.json_schema.build_regex_from_schema(json.dumps(schema))
        return outlines_core.Index(regex, vocabulary)

    def fill(m: Any, mask: torch.Tensor, row: int) -> None:
        m.write_mask_into(mask[row].data_ptr(), mask.shape[1], 4)

    def fill_batch(ms: list[Any], mask: torch.Tensor) -> None:  # no batch call: a loop
        for i, m in enumerate(ms):
            fill(m, mask, i)

    def consume(m: Any, t: int) -> bool:
        if not m.accepts_tokens([t]):
            return False
        m.advance(t, return_tokens=False)
        return True

    return Lib(
        "outlines-core",
        compile_,
        outlines_core.Guide,
        fill,
        fill_batch,
        consume,
        lambda m: bool(m.is_finished()),
        lambda m, n: m.rollback_state(n),
    )


ADAPTERS = {"llguidance": llguidance_lib, "xgrammar": xgrammar_lib, "outlines-core": outlines_lib}


# ---- measurements ---------------------------------------------------------------------------
def allowed(mask: torch.Tensor, row: int, token: int) -> bool:
    return bool((int(mask[row, token // 32]) >> (token % 32)) & 1)


def stats_us(seconds: Sequence[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in seconds)
    p99 = us[min(len(us) - 1, round(0.99 * (len(us) - 1)))]
    return {
        "p50": round(statistics.median(us), 1),
        "p99": round(p99, 1),
        "mean": round(statistics.fmean(us), 1),
        "n": len(us),
    }


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """fn(*args) and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def walk(lib: Lib, compiled: Any, doc: list[int], eot: int, v: int) -> dict[str, Any]:
    """Batch 1: mask then consume at every position of `doc`, WALKS times."""
    mask = torch.full((1, (v + 31) // 32), -1, dtype=torch.int32)
    masks, consumes, rejected = [], [], None
    for _ in range(WALKS):
        m = lib.matcher(compiled)
        for pos, token in enumerate(doc):
            _, dt = timed(lib.fill, m, mask, 0)
            masks.append(dt)
            if rejected is None and not allowed(mask, 0, token):
                rejected = pos
            ok, dt = timed(lib.consume, m, token)
            consumes.append(dt)
            assert ok, f"{lib.name} refused token {pos} ({token}) of a valid document"
    lib.fill(m, mask, 0)
    eos_at_end = allowed(mask, 0, eot)
    n_allowed_end = int(sum(bin(w & 0xFFFFFFFF).count("1") for w in mask[0].tolist()))
    accepting_at_end = lib.accepting(m)
    lib.rollback(m, 3)  # back three tokens, and forward again
    redo = all(lib.consume(m, t) for t in doc[-3:])
    invalid_first = doc[-1]  # the closing brace, as the first token
    mid = lib.matcher(compiled)
    for t in doc[:-3]:
        lib.consume(mid, t)
    lib.fill(mid, mask, 0)
    return {
        "mask_us": stats_us(masks),
        "consume_us": stats_us(consumes),
        "doc_tokens": len(doc),
        "mask_missed_doc_token_at": rejected,  # None: every document token was allowed
        "eos_allowed_at_end": eos_at_end,
        "tokens_allowed_at_end": n_allowed_end,
        "accepting_at_end": accepting_at_end,
        "accepting_before_end": lib.accepting(mid),
        "eos_allowed_before_end": allowed(mask, 0, eot),
        "rollback_3_and_redo": redo and lib.accepting(m),
        "rejects_invalid_token": not lib.consume(lib.matcher(compiled), invalid_first),
    }


def batch_steps(lib: Lib, compiled: Any, docs: list[list[int]], v: int) -> dict[str, Any]:
    """8 matchers as the 8 rows of a step: the whole step's masks, in a loop of single-row
    calls and through the library's batch call."""
    mask = torch.full((len(docs), (v + 31) // 32), -1, dtype=torch.int32)
    steps = min(len(d) for d in docs)

    def fill_rows(ms: list[Any], mask: torch.Tensor) -> None:
        for i, m in enumerate(ms):
            lib.fill(m, mask, i)

    out: dict[str, Any] = {}
    for how in ("loop", "batch_call"):
        times = []
        for _ in range(WALKS):
            ms = [lib.matcher(compiled) for _ in docs]
            for pos in range(steps):
                fill_step = fill_rows if how == "loop" else lib.fill_batch
                _, dt = timed(fill_step, ms, mask)
                times.append(dt)
                for i, m in enumerate(ms):
                    assert allowed(mask, i, docs[i][pos]), f"{lib.name}: row {i} pos {pos}"
                    assert lib.consume(m, docs[i][pos])
        out[f"step_{how}_us"] = stats_us(times)
    return out


def apply_masks(v: int) -> dict[str, Any]:
    """Setting the disallowed logits to −inf: a plain torch unpack (no torch.compile) and
    xgrammar's CPU kernel; all three libraries fill the same int32 bitmask layout."""
    import xgrammar

    bits = torch.arange(32, dtype=torch.int32)

    def native(logits: torch.Tensor, mask: torch.Tensor) -> None:
        b = mask.shape[0]
        ok = ((mask.unsqueeze(-1) >> bits) & 1).bool().view(b, -1)[:, : logits.shape[1]]
        logits.masked_fill_(~ok, float("-inf"))  # (B, V)

    def xgrammar_cpu(logits: torch.Tensor, mask: torch.Tensor) -> None:
        xgrammar.apply_token_bitmask_inplace(logits, mask)

    out: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(0)
    for b in (1, BATCH):
        mask = torch.randint(-(2**31), 2**31 - 1, (b, (v + 31) // 32), dtype=torch.int32)
        for dtype in (torch.bfloat16, torch.float32):
            base = torch.randn(b, v, generator=gen).to(dtype)
            for name, fn in (("torch", native), ("xgrammar_cpu", xgrammar_cpu)):
                times = [timed(fn, base.clone(), mask)[1] for _ in range(200)]
                key = f"{name}_b{b}_{str(dtype).removeprefix('torch.')}_us"
                out[key] = round(statistics.median(times) * 1e6, 1)
    return out


def rejections(lib: Lib, tok: Tokenizer) -> dict[str, str]:
    """Per feature: the library's error, or whether the breaking document gets through."""
    out = {}
    for feature, (schema, breaking) in UNSUPPORTED.items():
        try:
            compiled = lib.compile(schema)
        except Exception as exc:  # the library's own message is the result
            out[feature] = f"rejected: {type(exc).__name__}: {str(exc)[:400]}"
            continue
        m = lib.matcher(compiled)
        through = all(lib.consume(m, t) for t in tok.encode(json.dumps(breaking)).ids)
        if through and lib.accepting(m):
            out[feature] = "compiles, ignored: a breaking document passes"
        else:
            out[feature] = "compiles, enforced: a breaking document is refused"
    return out


def measure(name: str, tok: Tokenizer, eot: int) -> dict[str, Any]:
    v = tok.get_vocab_size()
    lib, setup = timed(ADAPTERS[name], tok, eot)
    docs = [tok.encode(json.dumps(instance(i))).ids for i in range(BATCH)]
    result: dict[str, Any] = {"version": version(name), "tokenizer_setup_ms": round(setup * 1e3)}
    for label, schema in (("json", ANY_OBJECT), ("schema", SCHEMA)):
        try:
            compiled, dt = timed(lib.compile, schema)
        except Exception as exc:
            result[label] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
            continue
        _, dt_matcher = timed(lib.matcher, compiled)
        row: dict[str, Any] = {
            "compile_ms": round(dt * 1e3, 2),
            "new_matcher_us": round(dt_matcher * 1e6, 1),
        }
        try:
            row |= walk(lib, compiled, docs[0], eot, v) | batch_steps(lib, compiled, docs, v)
        except AssertionError as exc:
            row["error"] = str(exc)
        result[label] = row
    result["unsupported"] = rejections(lib, tok)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", default="tiny", help="tiny, or a vocabulary size to train")
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the scheduler's decode thread count (QIG_INFER_THREADS)

    if args.vocab == "tiny":
        (tok, source), dt_vocab = timed(tiny_coordizer_tokenizer)
    else:
        (tok, source), dt_vocab = timed(bigger_tokenizer, int(args.vocab))
    eot = tok.token_to_id(EOT)
    assert eot is not None, f"the vocabulary lacks {EOT}"
    v = tok.get_vocab_size()
    doc = json.dumps(instance(0))
    print(f"# vocab {v} from {source} in {dt_vocab:.1f} s; document {len(doc)} chars", flush=True)
    libs: dict[str, Any] = {}
    for name in args.libs.split(","):
        t0 = time.perf_counter()
        libs[name] = measure(name, tok, eot)
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    emit(
        {
            "bench": "grammar",
            "vocab_size": v,
            "vocab_source": source,
            "doc_tokens": len(tok.encode(doc).ids),
            "torch": torch.__version__,
            "libraries": libs,
            "apply": apply_masks(v),
        }
    )


if __name__ == "__main__":
    main()
