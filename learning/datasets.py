"""A job's training data: its uploads' records or the bootstrap corpus, as a token stream."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from constellation import published
from constellation.engine import Coordizer, CorpusConfig, TokenStream, build_corpus
from constellation.engine.data import Example
from learning.models import FineTuneJob
from learning.runs import InvalidJob
from uploads import services as uploads


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
