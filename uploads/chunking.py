"""Token chunking with overlap, and a basin per chunk (docs/uploads.md). No Django here.

The text is tokenised by the engine's exact bulk encoder (constellation/engine/bulk_encode.py).
Windows of `size` tokens, each starting `size − overlap` tokens after the previous one; the last
window may be shorter (a window made only of the previous one's overlap is not emitted). A
chunk's basin is the IDF-weighted mixture of its tokens' coordinates, exactly
`Coordizer.basin_of_ids`, computed for all chunks at once with `torch.nn.functional.embedding_bag`.
The document's basin is the same mixture over all its tokens (docs/design.md §3: a text's basin).
A chunk's text is the exact substring of the document its tokens cover (byte offsets from the
tokens' byte lengths; a window edge inside a multi-byte character moves to the character's end).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from constellation.engine import Coordizer, bulk_encode
from constellation.engine.geometry import BASIN_DIM, as_basin

_BASIN_BLOCK = 4096  # chunks per embedding_bag call (bounds memory)


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
    coords = torch.from_numpy(coordizer.coords.astype(np.float32))  # (V, 64)
    idf = coordizer.idf.astype(np.float32)  # (V,)
    out = np.empty((len(starts), BASIN_DIM), dtype=np.float64)
    n = ids.size
    full = starts + size <= n
    full_starts = starts[full]
    offsets = np.arange(size, dtype=np.int64)
    for first in range(0, full_starts.size, _BASIN_BLOCK):
        block = full_starts[first : first + _BASIN_BLOCK]
        windows = ids[block[:, None] + offsets]  # (B, size)
        weights = torch.from_numpy(idf[windows])
        sums = torch.nn.functional.embedding_bag(
            torch.from_numpy(windows), coords, mode="sum", per_sample_weights=weights
        )
        out[np.flatnonzero(full)[first : first + _BASIN_BLOCK]] = sums.double().numpy()
    for i in np.flatnonzero(~full):  # the last, shorter window
        window = ids[starts[i] :]
        out[i] = idf[window].astype(np.float64) @ coordizer.coords[window]
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
    t0 = time.perf_counter()
    raw = text.encode("utf-8")
    ids = bulk_encode.encode(coordizer, text, raw=raw)
    t1 = time.perf_counter()
    starts = window_starts(ids.size, size, overlap)
    ends = np.minimum(starts + size, ids.size)
    texts = _window_texts(coordizer, raw, ids, starts, ends)
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
    coordizer: Coordizer, data: bytes, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> list[str]:
    """The exact substring each window covers (see the module docstring); `data` is the text's
    UTF-8 bytes."""
    # byte offset of every window edge: the token bytes summed between consecutive edges
    edges = np.union1d(np.union1d(starts, ends), [0, ids.size])
    sizes = np.take(bulk_encode.token_bytes(coordizer), ids)
    between = np.add.reduceat(sizes, edges[:-1]) if ids.size else np.zeros(0, dtype=np.int64)
    at = np.concatenate([[0], np.cumsum(between)])
    if int(at[-1]) != len(data):  # not byte-level after all: decode the windows instead
        return [coordizer.decode(ids[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]
    byte_starts = at[np.searchsorted(edges, starts)].tolist()
    byte_ends = at[np.searchsorted(edges, ends)].tolist()
    out = []
    for s, e in zip(byte_starts, byte_ends, strict=True):
        while s < e and (data[s] & 0xC0) == 0x80:  # inside a character: start at the next one
            s += 1
        while e < len(data) and (data[e] & 0xC0) == 0x80:  # end at the character's end
            e += 1
        out.append(data[s:e].decode("utf-8"))
    return out
