"""Token chunking with overlap, and a basin per chunk (docs/uploads.md). No Django here.

Fast, exact tokenisation of large texts
---------------------------------------
The coordizer's byte-level BPE pre-tokenises with the GPT-2 pattern, and BPE never merges across
pre-tokens. A position just before a whitespace character that follows a non-whitespace one is
always a pre-token boundary, and what follows it is pre-tokenised the same whatever came before.
So the text is split there into *units* (a whitespace run plus the word after it, e.g. " the",
"\\n\\n    def"), each distinct unit is tokenised once, and the token stream is put back together
with numpy. Real text repeats its words (Zipf), so this tokenises a fraction of the bytes; the
result is identical to `Coordizer.encode` (tests/uploads/test_chunking.py checks it). Units made
of one space and a word are tokenised together, joined by newlines (a newline is a pre-token of
its own there), so the tokenizer is called on large strings rather than once per word.

Chunks and basins
-----------------
Windows of `size` tokens, each starting `size − overlap` tokens after the previous one; the last
window may be shorter (a window made only of the previous one's overlap is not emitted). A
chunk's basin is the IDF-weighted mixture of its tokens' coordinates, exactly
`Coordizer.basin_of_ids`, computed for all chunks at once with `torch.nn.functional.embedding_bag`.
The document's basin is the same mixture over all its tokens (DESIGN §3: a text's basin).
A chunk's text is the exact substring of the document its tokens cover (byte offsets from the
tokens' byte lengths; a window edge inside a multi-byte character moves to the character's end).
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import torch

from constellation.engine import Coordizer
from constellation.engine.geometry import BASIN_DIM, as_basin

_UNIT_BOUNDARY = re.compile(r"(?<=\S)(?=\s)")
_PIECE_CHARS = 1 << 16  # the fallback path's pieces (tokenised in parallel)
_JOIN_GROUP = 4096  # units per joined string in the fast path
_BLOCK_CHARS = 1 << 22  # the fast path splits a text into units a block at a time
_BASIN_BLOCK = 4096  # chunks per embedding_bag call (bounds memory)
_GPT2_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}


@dataclass
class _Prepared:
    fast: bool  # the unit-splitting path is exact for this tokenizer
    specials: tuple[str, ...]  # added tokens' contents (texts holding one take the fallback)
    newline: int  # the id of "\n"
    token_bytes: np.ndarray  # (V,) UTF-8 byte length of each token
    coords: torch.Tensor  # (V, 64) float32
    idf: np.ndarray  # (V,) float32


_prepared: weakref.WeakKeyDictionary[Coordizer, _Prepared] = weakref.WeakKeyDictionary()


def _prepare(coordizer: Coordizer) -> _Prepared:
    cached = _prepared.get(coordizer)
    if cached is not None:
        return cached
    tok = coordizer.tokenizer
    state = json.loads(tok.to_str())
    pre = state.get("pre_tokenizer") or {}
    fast = state.get("normalizer") is None and all(
        pre.get(k) == v for k, v in _GPT2_BYTE_LEVEL.items()
    )
    specials = tuple(str(t["content"]) for t in state.get("added_tokens", []))
    newline = tok.encode("\n").ids
    fast = fast and len(newline) == 1
    vocab = tok.get_vocab(with_added_tokens=True)
    lengths = np.zeros(coordizer.vocab_size, dtype=np.int64)
    for token, index in vocab.items():
        lengths[index] = len(token)  # byte-level: one character per byte
    for content in specials:
        special = tok.token_to_id(content)
        if special is not None:
            lengths[special] = len(content.encode("utf-8"))
    prepared = _Prepared(
        fast=fast,
        specials=specials,
        newline=newline[0] if newline else -1,
        token_bytes=lengths,
        coords=torch.from_numpy(coordizer.coords.astype(np.float32)),
        idf=coordizer.idf.astype(np.float32),
    )
    _prepared[coordizer] = prepared
    return prepared


def _ids(encodings: list[Any]) -> list[np.ndarray]:
    return [np.asarray(e.ids, dtype=np.int64) for e in encodings]


def encode(coordizer: Coordizer, text: str) -> np.ndarray:
    """Token ids of `text` (int64), identical to `coordizer.encode(text)`, fast on large texts."""
    if not text:
        return np.zeros(0, dtype=np.int64)
    prep = _prepare(coordizer)
    if not prep.fast or any(s in text for s in prep.specials):
        return _encode_pieces(coordizer, _UNIT_BOUNDARY.split(text))
    table: dict[str, int] = {}
    sequences = []
    for block in _blocks(text):  # bounds the memory of the units' list
        units = _UNIT_BOUNDARY.split(block)
        for unit in dict.fromkeys(units):  # this block's distinct units, in order
            if unit not in table:
                table[unit] = len(table)
        sequences.append(np.fromiter(map(table.__getitem__, units), np.int64, len(units)))
        del units
    sequence = np.concatenate(sequences)
    unique = list(table)
    # one space, then a word (a unit has no whitespace after its word)
    simple = [i for i, u in enumerate(unique) if len(u) > 1 and u[0] == " " and not u[1].isspace()]
    is_simple = np.zeros(len(unique), dtype=bool)
    is_simple[simple] = True
    other = np.flatnonzero(~is_simple).tolist()
    tok = coordizer.tokenizer
    flats, counts = [], []
    groups = [simple[i : i + _JOIN_GROUP] for i in range(0, len(simple), _JOIN_GROUP)]
    joined = _ids(tok.encode_batch_fast(["\n".join(unique[j] for j in g) for g in groups]))
    for group, ids in zip(groups, joined, strict=True):
        newlines = np.flatnonzero(ids == prep.newline)
        if newlines.size != len(group) - 1:  # cannot happen for GPT-2 byte-level BPE; stay exact
            return _encode_pieces(coordizer, _UNIT_BOUNDARY.split(text))
        counts.append(np.diff(np.concatenate([[-1], newlines, [ids.size]])) - 1)
        flats.append(np.delete(ids, newlines))
    encodings = tok.encode_batch_fast([unique[j] for j in other])
    counts.append(np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings)))
    flats.append(np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64))
    order = np.asarray(simple + other, dtype=np.int64)
    in_order = np.concatenate(counts)
    lengths = np.empty(len(unique), dtype=np.int64)
    starts = np.empty(len(unique), dtype=np.int64)
    lengths[order] = in_order
    starts[order] = np.cumsum(in_order) - in_order
    flat = np.concatenate(flats)
    seq_len = lengths[sequence]
    total = int(seq_len.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(seq_len) - seq_len, seq_len)
    return flat[within + np.repeat(starts[sequence], seq_len)]


def _blocks(text: str) -> list[str]:
    """`text` cut at unit boundaries into blocks of about _BLOCK_CHARS characters."""
    out, start = [], 0
    while len(text) - start > _BLOCK_CHARS:
        found = _UNIT_BOUNDARY.search(text, start + _BLOCK_CHARS)
        if found is None:
            break
        out.append(text[start : found.start()])
        start = found.start()
    out.append(text[start:])
    return out


def _encode_pieces(coordizer: Coordizer, units: list[str]) -> np.ndarray:
    """Exact for any tokenizer whose pre-tokens never cross a unit boundary: units grouped into
    pieces of about 64k characters, tokenised in parallel."""
    pieces, current, size = [], [], 0
    for unit in units:
        current.append(unit)
        size += len(unit)
        if size >= _PIECE_CHARS:
            pieces.append("".join(current))
            current, size = [], 0
    if current:
        pieces.append("".join(current))
    ids = _ids(coordizer.tokenizer.encode_batch_fast(pieces))
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)


def window_starts(n_tokens: int, size: int, overlap: int) -> np.ndarray:
    """Start positions of the windows over n_tokens tokens."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunking: need size ≥ 1 and 0 ≤ overlap < size, got {size}, {overlap}")
    if n_tokens == 0:
        return np.zeros(0, dtype=np.int64)
    stride = size - overlap
    count = 1 if n_tokens <= size else 1 + -(-(n_tokens - size) // stride)
    return np.arange(count, dtype=np.int64) * stride


def basins_of_windows(
    coordizer: Coordizer, ids: np.ndarray, starts: np.ndarray, size: int
) -> np.ndarray:
    """Basin (N, 64) of each window ids[s : s + size], as `Coordizer.basin_of_ids` computes it."""
    prep = _prepare(coordizer)
    out = np.empty((len(starts), BASIN_DIM), dtype=np.float64)
    n = ids.size
    full = starts + size <= n
    full_starts = starts[full]
    offsets = np.arange(size, dtype=np.int64)
    for first in range(0, full_starts.size, _BASIN_BLOCK):
        block = full_starts[first : first + _BASIN_BLOCK]
        windows = ids[block[:, None] + offsets]  # (B, size)
        weights = torch.from_numpy(prep.idf[windows])
        sums = torch.nn.functional.embedding_bag(
            torch.from_numpy(windows), prep.coords, mode="sum", per_sample_weights=weights
        )
        out[np.flatnonzero(full)[first : first + _BASIN_BLOCK]] = sums.double().numpy()
    for i in np.flatnonzero(~full):  # the last, shorter window
        window = ids[starts[i] :]
        out[i] = prep.idf[window].astype(np.float64) @ coordizer.coords[window]
    return as_basin(out, "chunk basins")


def document_basin(coordizer: Coordizer, ids: np.ndarray) -> np.ndarray:
    """The IDF-weighted mixture of all the tokens' coordinates (64,): `basin_of_ids(ids)`."""
    if ids.size == 0:
        return np.full(BASIN_DIM, 1.0 / BASIN_DIM)
    counts = np.bincount(ids, minlength=coordizer.vocab_size).astype(np.float64)
    return as_basin((counts * coordizer.idf) @ coordizer.coords, "document basin")


@dataclass
class Chunks:
    n_tokens: int
    texts: list[str]
    token_counts: list[int]
    basins: np.ndarray  # (N, 64) float64
    document_basin: np.ndarray  # (64,)
    timings: dict[str, float] = field(default_factory=dict)


def chunk_text(coordizer: Coordizer, text: str, size: int, overlap: int) -> Chunks:
    """Tokenise `text`, cut it into overlapping token windows, and give each window a basin."""
    import time

    t0 = time.perf_counter()
    ids = encode(coordizer, text)
    t1 = time.perf_counter()
    starts = window_starts(ids.size, size, overlap)
    ends = np.minimum(starts + size, ids.size)
    texts = _window_texts(coordizer, text, ids, starts, ends)
    t2 = time.perf_counter()
    basins = basins_of_windows(coordizer, ids, starts, size)
    doc = document_basin(coordizer, ids)
    t3 = time.perf_counter()
    return Chunks(
        n_tokens=int(ids.size),
        texts=texts,
        token_counts=[int(x) for x in ends - starts],
        basins=basins,
        document_basin=doc,
        timings={"tokenise_s": t1 - t0, "chunk_s": t2 - t1, "basins_s": t3 - t2},
    )


def _window_texts(
    coordizer: Coordizer, text: str, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> list[str]:
    """The exact substring each window covers (see the module docstring)."""
    data = text.encode("utf-8")
    offsets = np.concatenate([[0], np.cumsum(_prepare(coordizer).token_bytes[ids])])
    if int(offsets[-1]) != len(data):  # not byte-level after all: decode the windows instead
        return [coordizer.decode(ids[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]
    out = []
    for s, e in zip(offsets[starts].tolist(), offsets[ends].tolist(), strict=True):
        while s < e and (data[s] & 0xC0) == 0x80:  # inside a character: start at the next one
            s += 1
        while e < len(data) and (data[e] & 0xC0) == 0x80:  # end at the character's end
            e += 1
        out.append(data[s:e].decode("utf-8"))
    return out
