"""A job's training data: its uploads' records or the bootstrap corpus, as a token stream; and
what an adapter job holds out of it (docs/training.md, "Held-out evaluation and promotion").

The held-out split is by chunk and deterministic: a text record is cut into chunks of about
`CHUNK_CHARS` characters at paragraph, line, sentence or word boundaries (the cut depends on the
text alone, not on the coordizer); a prompt/completion or dialogue record is one chunk. A chunk
is held out when the sha256 of its text falls in the first `HELDOUT_FRACTION` of the hash range,
so the same upload always holds out the same chunks (and identical chunks fall on the same
side). A dataset of two chunks or more holds out at least one and keeps at least one. The
general held-out set is a fixed sample of the bootstrap corpus's chunks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings

from constellation import published
from constellation.engine import Coordizer, CorpusConfig, TokenStream, build_corpus
from constellation.engine.data import Example
from learning.models import FineTuneJob
from learning.runs import InvalidJob
from uploads import services as uploads
from uploads.extract import record_text

HELDOUT_FRACTION = 0.15  # of each dataset's chunks
CHUNK_CHARS = 600  # a text record's chunks: about this long (a short tail joins the one before)
GENERAL_CHUNKS = 32  # chunks in the general held-out set, one per bootstrap-corpus document
MIN_GENERAL_CHARS = 200  # shorter chunks say too little to stand for general text


def bootstrap_corpus() -> list[str]:
    """The bootstrap corpus (installed packages' docs, docs/design.md §6), built once and kept."""
    docs = published.load_corpus()
    if docs is None:
        docs = build_corpus(CorpusConfig(max_bytes=int(settings.BOOTSTRAP_CORPUS_MB * 1e6)))
        published.publish_corpus(docs)
    return docs


def dataset_examples(job: FineTuneJob) -> list[Example]:
    """Training examples from the job's uploads: the records extracted when each was uploaded
    ({"text"}, {"prompt", "completion"} or {"messages"}; docs/uploads.md)."""
    examples: list[Example] = []
    for knowledge in job.datasets.order_by("pk"):
        try:
            examples += uploads.records_of(knowledge)
        except ValueError as exc:
            raise InvalidJob(f"dataset {exc}") from exc
    return examples


def token_stream(examples: Sequence[Example], coordizer: Coordizer) -> TokenStream:
    try:
        return TokenStream.from_examples(examples, coordizer.encode_large, coordizer.eot_id)
    except ValueError as exc:
        raise InvalidJob(f"training data: {exc}") from exc


def published_coordizer() -> Coordizer:
    if not published.has_coordizer():
        raise InvalidJob("there is no coordizer yet: run a coordizer job first")
    return published.load_coordizer()


# ---- the held-out split -------------------------------------------------------------------------
def text_chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Cut `text` into consecutive pieces of about `size` characters ("".join gives it back):
    each cut at the last paragraph break, else line break, else sentence end, else space in the
    second half of the piece; a tail shorter than a quarter of `size` stays with its piece."""
    pieces, start, n = [], 0, len(text)
    while start < n:
        end = start + size
        if n - end < size // 4:
            end = n
        else:
            window = text[start + size // 2 : end]
            for mark in ("\n\n", "\n", ". ", " "):
                found = window.rfind(mark)
                if found >= 0:
                    end = start + size // 2 + found + len(mark)
                    break
        pieces.append(text[start:end])
        start = end
    return pieces


def chunk_hash(chunk: Example) -> float:
    """Where the sha256 of the chunk's text (a record's canonical JSON) falls in [0, 1)."""
    if isinstance(chunk, dict) and set(chunk) == {"text"}:
        chunk = str(chunk["text"])
    text = chunk if isinstance(chunk, str) else json.dumps(chunk, sort_keys=True)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Split:
    """A job's data: what it trains on and what it holds out."""

    held_in: list[Example] = field(default_factory=list)  # consecutive held-in chunks, joined
    held_out: list[Example] = field(default_factory=list)  # one example per held-out chunk

    def __iadd__(self, other: Split) -> Split:
        self.held_in += other.held_in
        self.held_out += other.held_out
        return self


def split_records(records: Sequence[Example]) -> Split:
    """One dataset's records → its held-in examples and held-out chunks (module docstring)."""
    chunks: list[tuple[int, Example]] = []  # (record number, chunk)
    for number, record in enumerate(records):
        if isinstance(record, str) or set(record) == {"text"}:
            text = record if isinstance(record, str) else str(record["text"])
            chunks += [(number, {"text": piece}) for piece in text_chunks(text)]
        else:
            chunks.append((number, record))
    scores = [chunk_hash(chunk) for _, chunk in chunks]
    out = {i for i, score in enumerate(scores) if score < HELDOUT_FRACTION}
    if len(chunks) < 2:
        out = set()  # one chunk: it is all there is to learn
    elif not out:
        out = {min(range(len(chunks)), key=scores.__getitem__)}
    if len(out) == len(chunks) > 1:
        out.discard(max(range(len(chunks)), key=scores.__getitem__))
    split = Split()
    run: list[str] = []  # held-in text chunks of one record, waiting to be joined
    for i, (number, chunk) in enumerate(chunks):
        joins = i + 1 < len(chunks) and chunks[i + 1][0] == number and i + 1 not in out
        if i in out:
            split.held_out.append(chunk)
        elif isinstance(chunk, dict) and set(chunk) == {"text"}:
            run.append(str(chunk["text"]))
            if not joins:
                split.held_in.append({"text": "".join(run)})
                run = []
        else:
            split.held_in.append(chunk)
    return split


def job_split(job: FineTuneJob, hold_out: bool = True) -> Split:
    """The job's datasets, each split on its own (so each holds out its share). `hold_out`
    False (the learning loop's improvements, each record a fact of its own): all held in."""
    split = Split()
    for knowledge in job.datasets.order_by("pk"):
        try:
            records = uploads.records_of(knowledge)
        except ValueError as exc:
            raise InvalidJob(f"dataset {exc}") from exc
        split += split_records(records) if hold_out else Split(held_in=list(records))
    return split


def general_heldout(exclude: Sequence[Example] = ()) -> list[str]:
    """The general held-out set: from the first `GENERAL_CHUNKS` bootstrap-corpus documents in
    sha256 order, each one's lowest-hash chunk of at least `MIN_GENERAL_CHARS` characters —
    leaving out any chunk found in `exclude` (a job's own training text)."""
    training = [t if isinstance(t, str) else record_text(t) for t in exclude]
    chosen: list[str] = []
    docs = sorted(bootstrap_corpus(), key=lambda d: hashlib.sha256(d.encode("utf-8")).digest())
    for doc in docs:
        pieces = [p for p in text_chunks(doc) if len(p.strip()) >= MIN_GENERAL_CHARS]
        if not pieces:
            continue
        piece = min(pieces, key=chunk_hash)
        if any(piece in text for text in training):
            continue
        chosen.append(piece)
        if len(chosen) == GENERAL_CHUNKS:
            break
    return chosen
