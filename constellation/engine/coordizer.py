"""Coordizer: byte-level BPE tokenizer + per-token basin coordinates (docs/design.md §3).

Token vectors come from co-occurrence (PPMI over a ±window, truncated SVD); k-means puts 64
centroids among them and coords(t) = softmax(−‖v_t − c_j‖² / τ). A text's basin is the
IDF-weighted mixture of its tokens' coordinates, so it stays on the simplex.

Files in a coordizer directory: tokenizer.json, basin_coords.npy (V, 64), token_idf.npy (V,),
coordizer.json (the config).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from . import bulk_encode
from .geometry import BASIN_DIM, Array, as_basin, geodesic

EOT = "<|endoftext|>"


@dataclass
class CoordizerConfig:
    vocab_size: int = 8000  # 32000 for the `100m` preset
    min_frequency: int = 2
    window: int = 5  # ± co-occurrence window
    svd_dim: int = 64  # dimension of the PPMI-SVD token vectors
    n_centroids: int = BASIN_DIM
    kmeans_iters: int = 30
    tau_scale: float = 0.1  # τ = tau_scale · median squared distance to the nearest centroid
    seed: int = 0


@lru_cache(maxsize=1)
def _byte_table() -> dict[str, int]:
    """ByteLevel's printable stand-in for each byte (GPT-2's table), reversed: char → byte."""
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    moved = [b for b in range(256) if b not in kept]
    table = {chr(b): b for b in kept}
    table.update({chr(256 + n): b for n, b in enumerate(moved)})
    return table


def _new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


class Coordizer:
    """Tokenizer + basin coordinates. Build with `Coordizer.train` or `Coordizer.load`."""

    def __init__(
        self, tokenizer: Tokenizer, coords: Array, idf: Array, config: CoordizerConfig
    ) -> None:
        v = tokenizer.get_vocab_size()
        assert coords.shape == (v, BASIN_DIM), f"coords must be ({v}, 64), got {coords.shape}"
        assert idf.shape == (v,), f"idf must be ({v},), got {idf.shape}"
        self.tokenizer = tokenizer
        self.coords = coords.astype(np.float64)
        self.idf = idf.astype(np.float64)
        self.config = config
        eot = tokenizer.token_to_id(EOT)
        assert eot is not None, f"tokenizer lacks the end-of-text token {EOT}"
        self.eot_id: int = eot

    # ---- tokenizer -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def encode_large(self, text: str) -> np.ndarray:
        """`encode(text)` as int64 ids, fast on large texts (each distinct word tokenised once)."""
        return bulk_encode.encode(self, text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tokenizer.encode_batch(list(texts))]

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for (its text may be half a UTF-8 character)."""
        piece = self.tokenizer.id_to_token(token) or ""
        if piece == EOT:
            return piece.encode()
        table = _byte_table()
        return bytes(table[c] for c in piece if c in table)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    # ---- basins ----------------------------------------------------------------------------
    def basin_of_ids(self, ids: Sequence[int]) -> Array:
        """IDF-weighted mixture of the tokens' coordinates (64,); uniform for no tokens."""
        if len(ids) == 0:
            return np.full(BASIN_DIM, 1.0 / BASIN_DIM)
        arr = np.asarray(ids, dtype=np.int64)
        w = self.idf[arr]  # (T,)
        return as_basin(w @ self.coords[arr])

    def text_basin(self, text: str) -> Array:
        return self.basin_of_ids(self.encode(text))

    def text_basins(self, texts: Sequence[str]) -> Array:
        return np.stack([self.basin_of_ids(ids) for ids in self.encode_batch(texts)])  # (N, 64)

    # ---- training --------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], config: CoordizerConfig | None = None) -> Coordizer:
        cfg = config or CoordizerConfig()
        if len(texts) == 0:
            raise ValueError("texts: need at least one document to train a coordizer")
        tok = _new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        docs = [list(e.ids) for e in tok.encode_batch(list(texts))]
        v = tok.get_vocab_size()
        coords = token_coords(docs, v, cfg)
        return cls(tok, coords, inverse_document_frequency(docs, v), cfg)

    def expand(self, texts: Sequence[str], n_new: int) -> Coordizer:
        """Add up to n_new tokens learned from `texts`; every existing id keeps its meaning.

        New BPE merges are appended after the old ones, so old ids and old merges are untouched.
        A new token's coordinates are the geodesic midpoint of its two parts' coordinates.
        """
        state = json.loads(self.tokenizer.to_str())
        vocab: dict[str, int] = dict(state["model"]["vocab"])
        merges: list[tuple[str, str]] = [_split_merge(m) for m in state["model"]["merges"]]
        known = set(merges)
        fresh = _new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=len(vocab) + n_new,
            min_frequency=self.config.min_frequency,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        fresh.train_from_iterator(texts, trainer)
        coords, idf = list(self.coords), list(self.idf)
        added = 0
        for m in json.loads(fresh.to_str())["model"]["merges"]:
            a, b = _split_merge(m)
            if added >= n_new:
                break
            if (a, b) in known or a not in vocab or b not in vocab or a + b in vocab:
                continue
            vocab[a + b] = len(vocab)
            merges.append((a, b))
            known.add((a, b))
            coords.append(geodesic(coords[vocab[a]], coords[vocab[b]], 0.5))
            idf.append(max(idf))
            added += 1
        tok = _new_tokenizer()
        # Whole words added by `add_words` stay whole (they are reached with ignore_merges).
        ignore = bool(state["model"].get("ignore_merges", False))
        tok.model = models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore)
        tok.add_special_tokens([EOT])
        return Coordizer(tok, np.stack(coords), np.array(idf), self.config)

    def add_words(self, texts: Sequence[str], max_new: int) -> AddedWords:
        """Make each text (one pre-token as typed mid-sentence, e.g. " qigong") one new token,
        in the order given, at most `max_new` of them; every old id and merge stays as it was.

        No merges are added: the new tokens are whole-pre-token vocabulary entries that the
        BPE model's `ignore_merges` emits as they are (a pre-token found in the vocabulary is
        one token; any other still goes through the merges). Merges would also fire inside other
        words ("Ġqig" + "ong" re-splits " qigongs"); an entry changes the text itself only.
        Switching `ignore_merges` on changes no old encoding when the merges turn every old
        token's own text into that one token, which is checked here (`UnreachableTokens`).
        A new token's basin coordinates and idf keep every text's basin: coords = the
        idf-weighted mixture of its parts' coordinates, idf = the sum of their idfs.
        """
        assert max_new >= 0, f"max_new must be ≥ 0, got {max_new}"
        state = json.loads(self.tokenizer.to_str())
        model = state["model"]
        assert model["type"] == "BPE", f"add_words needs a BPE model, got {model['type']}"
        vocab: dict[str, int] = dict(model["vocab"])
        assert len(vocab) == self.vocab_size, "an added token lies outside the BPE vocabulary"
        if not model.get("ignore_merges"):
            _check_merges_reach_every_token(self.tokenizer, vocab, state)
        parts: dict[int, list[int]] = {}
        skipped: dict[str, str] = {}
        for text in dict.fromkeys(texts):
            pieces = [p for p, _ in self.tokenizer.pre_tokenizer.pre_tokenize_str(text)]
            if len(pieces) != 1:
                skipped[text] = f"it is {len(pieces)} pre-tokens: BPE never joins across them"
            elif pieces[0] in vocab:
                skipped[text] = "it is one token already"
            elif len(parts) >= max_new:
                skipped[text] = f"the limit of {max_new} new tokens is reached"
            else:
                parts[len(vocab)] = self.encode(text)
                vocab[pieces[0]] = len(vocab)
        model["vocab"], model["ignore_merges"] = vocab, True
        coords, idf = [self.coords], [self.idf]
        for ids in parts.values():
            w = self.idf[ids]  # (P,)
            coords.append(as_basin(w @ self.coords[ids] / w.sum())[None])
            idf.append(np.array([w.sum()]))
        tok = Tokenizer.from_str(json.dumps(state))
        grown = Coordizer(tok, np.concatenate(coords), np.concatenate(idf), self.config)
        return AddedWords(grown, parts, skipped)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(d / "tokenizer.json"))
        np.save(d / "basin_coords.npy", self.coords)
        np.save(d / "token_idf.npy", self.idf)
        (d / "coordizer.json").write_text(json.dumps(asdict(self.config), indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Coordizer:
        d = Path(directory)
        for name in ("tokenizer.json", "basin_coords.npy", "token_idf.npy", "coordizer.json"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"coordizer directory {d} lacks {name}")
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        cfg = CoordizerConfig(**json.loads((d / "coordizer.json").read_text()))
        return cls(tok, np.load(d / "basin_coords.npy"), np.load(d / "token_idf.npy"), cfg)


@dataclass
class AddedWords:
    """What `Coordizer.add_words` made: the new coordizer, each new id's old ids (what its text
    used to split into: `Trunk.grow_vocab`'s `parts`), and each text left out with why."""

    coordizer: Coordizer
    parts: dict[int, list[int]]
    skipped: dict[str, str]


class UnreachableTokens(ValueError):
    """Some token is not what the merges make of its own text: whole-word entries (which switch
    the BPE model's `ignore_merges` on) would change how that text encodes."""


def _check_merges_reach_every_token(
    tokenizer: Tokenizer, vocab: dict[str, int], state: dict[str, Any]
) -> None:
    added = {str(t["content"]) for t in state.get("added_tokens", [])}
    bpe = tokenizer.model
    stray = [t for t in vocab if t not in added and [p.value for p in bpe.tokenize(t)] != [t]]
    if stray:
        raise UnreachableTokens(
            f"{len(stray)} tokens (e.g. {stray[:3]}) are not what the merges make of their own "
            "text: adding whole words would change how that text encodes"
        )


def _split_merge(m: str | list[str]) -> tuple[str, str]:
    if isinstance(m, str):
        a, b = m.split(" ", 1)
        return a, b
    return m[0], m[1]


def inverse_document_frequency(docs: Sequence[Sequence[int]], vocab_size: int) -> Array:
    """Smoothed idf(t) = log((1 + N) / (1 + df(t))) + 1, (V,)."""
    df = np.zeros(vocab_size)
    for ids in docs:
        df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
    return np.log((1 + len(docs)) / (1 + df)) + 1.0


def cooccurrence(docs: Iterable[Sequence[int]], vocab_size: int, window: int) -> torch.Tensor:
    """Symmetric ±window co-occurrence counts as a sparse (V, V) tensor."""
    rows, cols = [], []
    for ids in docs:
        a = torch.as_tensor(list(ids), dtype=torch.int64)
        for off in range(1, window + 1):
            if a.numel() > off:
                rows += [a[:-off], a[off:]]
                cols += [a[off:], a[:-off]]
    if not rows:
        return torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.int64), [], (vocab_size,) * 2)
    idx = torch.stack([torch.cat(rows), torch.cat(cols)])
    vals = torch.ones(idx.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(
        idx, vals, (vocab_size, vocab_size), check_invariants=False
    ).coalesce()


def ppmi(counts: torch.Tensor) -> torch.Tensor:
    """Positive pointwise mutual information of a sparse count matrix (sparse result)."""
    idx, val = counts.indices(), counts.values()
    total = val.sum()
    row = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, idx[0], val)
    col = torch.zeros(counts.shape[1], dtype=torch.float64).index_add_(0, idx[1], val)
    pmi = torch.log(val * total / (row[idx[0]] * col[idx[1]]))
    keep = pmi > 0
    return torch.sparse_coo_tensor(
        idx[:, keep], pmi[keep], counts.shape, check_invariants=False
    ).coalesce()


def kmeans(x: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    """k-means++ seeded Lloyd iterations; returns centroids (k, D)."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    assert n >= k, f"need at least {k} token vectors for {k} centroids, got {n}"
    centroids = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = ((x - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        c = x[int(torch.multinomial(probs, 1, generator=g))]
        centroids.append(c)
        d2 = torch.minimum(d2, ((x - c) ** 2).sum(1))
    cent = torch.stack(centroids)  # (k, D)
    for _ in range(iters):
        assign = torch.cdist(x, cent).argmin(1)  # (n,)
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).to(x.dtype)
        cent = torch.where(counts > 0, sums / counts.clamp(min=1), cent)
    return cent


def token_coords(docs: Sequence[Sequence[int]], vocab_size: int, cfg: CoordizerConfig) -> Array:
    """Per-token basin coordinates (V, 64): PPMI + truncated SVD + k-means (docs/design.md §3)."""
    m = ppmi(cooccurrence(docs, vocab_size, cfg.window))
    torch.manual_seed(cfg.seed)
    q = min(cfg.svd_dim, vocab_size - 1)
    u, s, _ = torch.svd_lowrank(m, q=q, niter=4)
    vecs = u * s.sqrt()  # (V, q)
    vecs = vecs / vecs.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cent = kmeans(vecs, cfg.n_centroids, cfg.kmeans_iters, cfg.seed)  # (64, q)
    d2 = torch.cdist(vecs, cent) ** 2  # (V, 64)
    tau = cfg.tau_scale * float(d2.min(1).values.median().clamp(min=1e-6))
    coords = torch.softmax(-d2 / tau, dim=1).numpy()
    return as_basin(coords)


def unigram_entropy(ids: Sequence[int] | np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the empirical unigram distribution: the loss of a context-free model."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum()) if p.size else math.nan
