"""Fast, exact tokenisation of large texts (identical to `Coordizer.encode`). No Django here.

The coordizer's byte-level BPE pre-tokenises with the GPT-2 pattern, and BPE never merges across
pre-tokens. A position just before a whitespace character that follows a non-whitespace one is
always a pre-token boundary, and what follows it is pre-tokenised the same whatever came before.
So the text is split there into *units* (a whitespace run plus the word after it, e.g. " the",
"\\n\\n    def"), each distinct unit is tokenised once, and the token stream is put back together
with numpy. Real text repeats its words (Zipf), so this tokenises a fraction of the bytes; the
result is identical to `Coordizer.encode` (tests/engine/test_bulk_encode.py checks it).

Finding the distinct units without a Python object per unit: the text's UTF-8 bytes are split
with numpy (a byte table for ASCII whitespace, a bytes pattern for the few non-ASCII whitespace
characters), and each unit gets two 64-bit polynomial hashes with bases drawn at random for the
call (prefix sums of byte × baseʲ, so a unit's hash is a difference of two prefix sums times an
inverse power). Units are grouped by (first hash, length); every member of a group must also
agree on the second hash, or the text takes the str path below — so a wrong grouping would need
two independent random hashes to collide at once. Units longer than `_MAX_UNIT_BYTES` (where
polynomial hashes modulo 2⁶⁴ have collisions whatever the base) also send the text to the str
path. Blocks of the text are hashed and reassembled on a thread pool (numpy releases the GIL).

The str path (`re.split` and a dict, one Python string per unit) gives the same units exactly;
it is the fallback. The distinct units are joined with the end-of-text token between them — an
added token, which the tokenizer splits out before pre-tokenising, so each unit is tokenised
alone — and tokenised in parallel by the `tokenizers` library. A tokenizer for which this is not
exact (another pre-tokenizer, a normalizer), or a text holding an added token, is tokenised in
pieces cut at unit boundaries instead.

The module takes anything with a `tokenizer`, an `eot_id` and a `vocab_size` (a `Coordizer`);
what it derives from a tokenizer is cached per such object, weakly.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import secrets
import sys
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import numpy as np
from tokenizers import Tokenizer, models

UNIT_BOUNDARY = re.compile(r"(?<=\S)(?=\s)")  # where a text is cut into units
_BLOCK_BYTES = 1 << 20  # the byte path hashes and reassembles a text a block at a time
_BLOCK_CHARS = 1 << 22  # the str path splits a text into units a block at a time
_MAX_UNIT_BYTES = 1024  # a longer unit sends the text to the str path (see the docstring)
_JOIN_GROUP = 4096  # distinct units per string handed to the tokenizer
_PIECE_CHARS = 1 << 16  # the last-resort path's pieces (tokenised in parallel)
_GPT2_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
_LENGTH_MIX = np.uint64(0x632BE59BD9B4E019)  # folds a unit's length into its first hash
_U64 = 1 << 64

T = TypeVar("T")
R = TypeVar("R")


class Vocabulary(Protocol):
    """What the encoder needs of a coordizer."""

    @property
    def tokenizer(self) -> Tokenizer: ...
    @property
    def eot_id(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...


@dataclass
class _Prepared:
    fast: bool  # the unit path is exact for this tokenizer
    tokenizer: Tokenizer  # the coordizer's, without the BPE word cache (distinct units never hit)
    specials: tuple[str, ...]  # added tokens' contents (texts holding one take the plain path)
    separator: int  # the end-of-text token's id: what the distinct units are joined with
    eot: str  # the end-of-text token's text
    token_bytes: np.ndarray  # (V,) UTF-8 byte length of each token (int32)


_prepared: weakref.WeakKeyDictionary[Vocabulary, _Prepared] = weakref.WeakKeyDictionary()


def _prepare(vocab: Vocabulary) -> _Prepared:
    cached = _prepared.get(vocab)
    if cached is not None:
        return cached
    tok = vocab.tokenizer
    state = json.loads(tok.to_str())
    pre = state.get("pre_tokenizer") or {}
    specials = tuple(str(t["content"]) for t in state.get("added_tokens", []))
    eot = str(tok.id_to_token(vocab.eot_id))
    fast = (
        state.get("normalizer") is None
        and all(pre.get(k) == v for k, v in _GPT2_BYTE_LEVEL.items())
        and eot in specials
        and tok.encode(eot).ids == [vocab.eot_id]
    )
    lengths = np.zeros(vocab.vocab_size, dtype=np.int64)
    for token, index in tok.get_vocab(with_added_tokens=True).items():
        lengths[index] = len(token)  # byte-level: one character per byte
    for content in specials:
        special = tok.token_to_id(content)
        if special is not None:
            lengths[special] = len(content.encode("utf-8"))
    prepared = _Prepared(
        fast=fast,
        tokenizer=_uncached(tok, state) if fast else tok,
        specials=specials,
        separator=vocab.eot_id,
        eot=eot,
        token_bytes=lengths.astype(np.int32),
    )
    _prepared[vocab] = prepared
    return prepared


def _uncached(tok: Tokenizer, state: dict[str, Any]) -> Tokenizer:
    """A copy of a BPE tokenizer with its word cache off: each distinct unit is tokenised once,
    so the cache only costs (measured: 13% of the BPE time on bench.ingest's text)."""
    model = dict(state["model"])
    if model.pop("type", None) != "BPE":
        return tok
    vocab, merges = model.pop("vocab"), model.pop("merges")
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    try:
        bpe = models.BPE(vocab=vocab, merges=merges, cache_capacity=0, **model)
    except TypeError:  # a field this version of tokenizers does not take: keep the original
        return tok
    copy = Tokenizer.from_str(tok.to_str())
    copy.model = bpe
    return copy


def token_bytes(vocab: Vocabulary) -> np.ndarray:
    """(V,) int32: each token's length in UTF-8 bytes (for a byte-level tokenizer)."""
    return _prepare(vocab).token_bytes


def encode(
    vocab: Vocabulary,
    text: str,
    *,
    raw: bytes | None = None,
    path: Literal["auto", "str"] = "auto",
) -> np.ndarray:
    """Token ids of `text` (int64), identical to `vocab.tokenizer.encode(text).ids`.

    `raw`: the text's UTF-8 bytes, if the caller has them already. `path="str"` finds the units
    with the str path only (bench.ingest times it against the byte-hash path)."""
    if not text:
        return np.zeros(0, dtype=np.int64)
    prep = _prepare(vocab)
    if prep.fast and not any(s in text for s in prep.specials):
        if path == "str":
            found = _units_by_str(text, prep.eot)
        else:
            data = text.encode("utf-8") if raw is None else raw
            found = _units_by_hash(text, data, prep.eot) or _units_by_str(text, prep.eot)
        ids = _tokenise_units(prep, *found)
        if ids is not None:
            return ids
    return _encode_pieces(vocab.tokenizer, UNIT_BOUNDARY.split(text))


# A text's units: the distinct units' texts in groups of _JOIN_GROUP, and per block of the text
# the index of each unit among the distinct ones.
_Units = tuple[list[str], list[np.ndarray]]


def _parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    items = list(items)
    workers = min(4, os.cpu_count() or 1, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="bulk-encode") as pool:
        return list(pool.map(fn, items))


@functools.cache
def _whitespace() -> tuple[np.ndarray, re.Pattern[bytes]]:
    """What `re`'s \\s matches, on UTF-8 bytes: a table of the ASCII whitespace bytes, and a
    pattern for the encodings of the non-ASCII whitespace characters."""
    table = np.zeros(256, dtype=bool)
    table[[i for i in range(128) if re.match(r"\s", chr(i))]] = True
    others = re.findall(r"\s", "".join(map(chr, range(128, sys.maxunicode + 1))))
    return table, re.compile(b"|".join(re.escape(ch.encode("utf-8")) for ch in others))


def _powers(base: int, n: int) -> np.ndarray:
    """base^j mod 2⁶⁴ for j < n (uint64), as an outer product of two short power tables."""
    width = 2048
    low = np.full(width, base, dtype=np.uint64)
    low[0] = 1
    low = np.cumprod(low, dtype=np.uint64)
    high = np.full(-(-n // width), pow(base, width, _U64), dtype=np.uint64)
    high[0] = 1
    high = np.cumprod(high, dtype=np.uint64)
    return (high[:, None] * low[None, :]).ravel()[:n]


class _Block(NamedTuple):
    """A block's distinct units: their keys (first hash and length), their representatives'
    byte starts and lengths and second hashes; and the group of each of the block's units."""

    keys: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    second: np.ndarray
    group: np.ndarray


@dataclass
class _Hasher:
    """Finds and hashes the units of a text's bytes, a block at a time (see the docstring)."""

    data: np.ndarray  # the text's bytes (uint8)
    spaces: np.ndarray  # (n, 2) byte ranges of the non-ASCII whitespace characters
    tables: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def space(self, lo: int, hi: int) -> np.ndarray:
        """Whether each byte of data[lo:hi] belongs to a whitespace character."""
        mask = _whitespace()[0][self.data[lo:hi]]
        if self.spaces.size:
            first, last = (
                np.searchsorted(self.spaces[:, 1], lo, "right"),
                np.searchsorted(self.spaces[:, 0], hi),
            )
            for a, b in self.spaces[first:last].tolist():
                mask[max(a, lo) - lo : min(b, hi) - lo] = True
        return mask

    def starts(self, lo: int, hi: int) -> np.ndarray:
        """Offsets from lo of the units that start in data[lo + 1 : hi]."""
        mask = self.space(lo, hi)
        found = np.flatnonzero(mask[1:] & ~mask[:-1])
        found += 1
        return found

    def cut(self, at: int) -> int:
        """The first unit start at or after `at` (or the end of the text)."""
        width = 1 << 16
        while True:
            found = self.starts(at - 1, min(self.data.size, at - 1 + width))
            if found.size:
                return at - 1 + int(found[0])
            if at - 1 + width >= self.data.size:
                return int(self.data.size)
            width *= 2

    def block(self, bounds: tuple[int, int]) -> _Block | None:
        """The units of data[lo:hi] (lo is a unit start) grouped by hash; None if a unit is too
        long or a group disagrees on the second hash."""
        lo, hi = bounds
        starts = np.concatenate([np.zeros(1, dtype=np.int64), self.starts(lo, hi)])
        lengths = np.diff(starts, append=hi - lo)
        if int(lengths.max()) > _MAX_UNIT_BYTES:
            return None
        x = self.data[lo:hi]
        ends = starts + lengths
        prefix = np.empty(x.size + 1, dtype=np.uint64)
        prefix[0] = 0
        hashes = []
        for powers, inverses in self.tables:
            np.multiply(powers[: x.size], x, out=prefix[1:])
            np.cumsum(prefix[1:], out=prefix[1:])
            hashed = prefix[ends]
            hashed -= prefix[starts]
            hashed *= inverses[starts]
            hashes.append(hashed)
        del prefix
        keys = lengths.astype(np.uint64)
        keys *= _LENGTH_MIX
        keys += hashes[0]
        order, first, group = _group(keys)
        representatives = order[first]
        second = hashes[1][representatives]
        if not np.array_equal(second[group], hashes[1]):
            return None
        chosen = starts[representatives]
        return _Block(keys[representatives], chosen + lo, lengths[representatives], second, group)


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(an order that sorts keys, mask of each distinct key's first place in that order,
    each key's group index)."""
    order = np.argsort(keys)
    ordered = keys[order]
    first = np.empty(keys.size, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    group = np.empty(keys.size, dtype=np.int64)
    group[order] = np.cumsum(first) - 1
    return order, first, group


def _units_by_hash(text: str, raw: bytes, separator: str) -> _Units | None:
    """The text's units by hashing its bytes (see the module docstring), their groups joined by
    `separator`; None when the str path must decide (a unit too long, a disagreeing second hash)."""
    if not raw:
        return [], []
    data = np.frombuffer(raw, dtype=np.uint8)
    spaces = np.zeros((0, 2), dtype=np.int64)
    if not text.isascii():
        found = [m.span() for m in _whitespace()[1].finditer(raw)]
        if found:
            spaces = np.asarray(found, dtype=np.int64)
    hasher = _Hasher(data, spaces)
    cuts = [0]
    while data.size - cuts[-1] > _BLOCK_BYTES:
        cuts.append(hasher.cut(cuts[-1] + _BLOCK_BYTES))
    if cuts[-1] < data.size:
        cuts.append(int(data.size))
    span = max(b - a for a, b in itertools.pairwise(cuts))
    for _ in range(2):
        base = secrets.randbits(64) | 1  # odd: invertible modulo 2⁶⁴
        hasher.tables.append((_powers(base, span), _powers(pow(base, -1, _U64), span + 1)))
    hashed = _parallel(hasher.block, itertools.pairwise(cuts))
    parts = [h for h in hashed if h is not None]
    if len(parts) < len(hashed):
        return None
    keys = np.concatenate([p.keys for p in parts])
    second = np.concatenate([p.second for p in parts])
    order, first, group = _group(keys)  # the blocks' distinct units, merged
    chosen = order[first]
    if not np.array_equal(second[chosen][group], second):
        return None
    sequences, offset = [], 0
    for part in parts:
        sequences.append(group[offset : offset + part.keys.size][part.group])
        offset += part.keys.size
    starts = np.concatenate([p.starts for p in parts])[chosen].tolist()
    lengths = np.concatenate([p.lengths for p in parts])[chosen].tolist()
    pieces = [raw[a : a + n] for a, n in zip(starts, lengths, strict=True)]
    joiner = separator.encode("utf-8")
    groups = [
        joiner.join(pieces[i : i + _JOIN_GROUP]).decode("utf-8")
        for i in range(0, len(pieces), _JOIN_GROUP)
    ]
    return groups, sequences


def _units_by_str(text: str, separator: str) -> _Units:
    """The text's units by `re.split`, one Python string each (exact; the fallback), their groups
    joined by `separator`."""
    table: dict[str, int] = {}
    sequences = []
    for block in _blocks(text):  # bounds the memory of the units' list
        units = UNIT_BOUNDARY.split(block)
        for unit in dict.fromkeys(units):  # this block's distinct units, in order
            if unit not in table:
                table[unit] = len(table)
        sequences.append(np.fromiter(map(table.__getitem__, units), np.int64, len(units)))
        del units
    unique = list(table)
    groups = [
        separator.join(unique[i : i + _JOIN_GROUP]) for i in range(0, len(unique), _JOIN_GROUP)
    ]
    return groups, sequences


def _tokenise_units(
    prep: _Prepared, groups: list[str], sequences: list[np.ndarray]
) -> np.ndarray | None:
    """The token ids of the text whose units are given: each distinct unit tokenised once (the
    groups in parallel), then every unit's ids put in place, a block per thread. None if a
    group's separators are not where they must be (cannot happen for the tokenizers `_prepare`
    admits; stay exact)."""
    flats, counts = [], []
    for group, ids in zip(groups, _ids(prep.tokenizer.encode_batch_fast(groups)), strict=True):
        separators = np.flatnonzero(ids == prep.separator)
        if separators.size != group.count(prep.eot):
            return None
        counts.append(np.diff(separators, prepend=-1, append=ids.size) - 1)
        flats.append(np.delete(ids, separators))
    flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.int64)
    lengths = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    per_unit = _parallel(lengths.__getitem__, sequences)
    bounds = np.cumsum([0] + [int(n.sum()) for n in per_unit]).tolist()
    out = np.empty(bounds[-1], dtype=np.int64)

    def place(i: int) -> None:
        n, sequence = per_unit[i], sequences[i]
        shift = starts[sequence]
        placed = np.cumsum(n)
        placed -= n
        shift -= placed
        index = np.repeat(shift, n)
        index += np.arange(index.size, dtype=np.int64)
        np.take(flat, index, out=out[bounds[i] : bounds[i + 1]])

    _parallel(place, range(len(sequences)))
    return out


def _ids(encodings: list[Any]) -> list[np.ndarray]:
    return [np.asarray(e.ids, dtype=np.int64) for e in encodings]


def _blocks(text: str) -> list[str]:
    """`text` cut at unit boundaries into blocks of about _BLOCK_CHARS characters."""
    out, start = [], 0
    while len(text) - start > _BLOCK_CHARS:
        found = UNIT_BOUNDARY.search(text, start + _BLOCK_CHARS)
        if found is None:
            break
        out.append(text[start : found.start()])
        start = found.start()
    out.append(text[start:])
    return out


def _encode_pieces(tokenizer: Tokenizer, units: list[str]) -> np.ndarray:
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
    ids = _ids(tokenizer.encode_batch_fast(pieces))
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
