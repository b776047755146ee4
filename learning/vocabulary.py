"""Vocabulary expansion: new tokens for the words users keep typing that the coordizer splits
badly (docs/training.md, "Vocabulary expansion").

`expand_vocabulary` is what the learning loop calls with the words of the `unknown_tokens`
signals. Each chosen word becomes one token for " word" (as it appears mid-sentence) through
`Coordizer.add_words`; every old id, merge and encoding of other text stays as it was. The trunk
grows one embedding row per new token (`Trunk.grow_vocab`: old rows and old tokens' logits bit
for bit the same), and kernel adapters, which never touch the embedding, keep serving
(`TrunkConfig.serves`).

Publishing order: the grown trunk first, then the coordizer. A reader between the two gets the
new trunk with the old coordizer, which works (the trunk only has rows no id reaches); the
reverse would hand the trunk ids beyond its embedding. Both versions are written before either
is served; anything failing before the coordizer is served leaves the old pair served.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from constellation import published
from constellation.engine import Coordizer, Trunk, checkpoint
from constellation.engine.coordizer import UnreachableTokens
from learning.usage_signals import LETTER_WORD

log = logging.getLogger(__name__)

MAX_WORD_CHARS = 64
_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


class InvalidWords(ValueError):
    """`expand_vocabulary` was given something that is not a map of words to counts."""


def expand_vocabulary(words: Mapping[str, int], max_new: int) -> dict[str, Any]:
    """Add up to `max_new` tokens, one per word, most-typed first, and publish the grown trunk
    and coordizer. `words` maps a word as typed (letters only) to how often users typed it.

    Returns a JSON-able report: `added` ([{word, tokens_before, tokens_after, new_ids}]),
    `skipped` ([{word, why}]), `vocab_before`, `vocab_after`, `trunk_version` and
    `coordizer_version` (the published version directories' names; None when nothing was
    published), and `reason` when nothing was added. Raises `InvalidWords` for bad input.
    """
    order = _validated(words, max_new)
    report: dict[str, Any] = {
        "added": [],
        "skipped": [],
        "vocab_before": None,
        "vocab_after": None,
        "trunk_version": None,
        "coordizer_version": None,
    }
    if not published.has_model():
        return {**report, "reason": "there is no published model yet"}
    coordizer_path = published.coordizer_dir().resolve()
    trunk_path = published.trunk_dir().resolve()
    coordizer = Coordizer.load(coordizer_path)
    report["vocab_before"] = report["vocab_after"] = coordizer.vocab_size
    if not order or max_new == 0:
        why = "no words were given" if not order else "max_new is 0"
        return {**report, "reason": why}
    trunk = _load_trunk(trunk_path)
    if trunk.cfg.vocab_size != coordizer.vocab_size:
        why = (
            f"the trunk's vocabulary ({trunk.cfg.vocab_size}) is not the coordizer's "
            f"({coordizer.vocab_size}): pretrain the trunk with this coordizer first"
        )
        return {**report, "reason": why}
    texts = {" " + word: word for word in order}
    try:
        grown = coordizer.add_words(list(texts), max_new)
    except UnreachableTokens as exc:
        return {**report, "reason": str(exc)}
    report["skipped"] = [{"word": texts[t], "why": why} for t, why in grown.skipped.items()]
    if not grown.parts:
        return {**report, "reason": "none of the words can become a new token"}
    new = grown.coordizer
    for text, word in texts.items():
        if text in grown.skipped:
            continue
        after = new.encode(text)
        assert len(after) == 1 and after[0] >= coordizer.vocab_size, (
            f"{text!r} encodes as {after}, not as one new token"
        )
        before = len(coordizer.encode(text))
        report["added"].append(
            {"word": word, "tokens_before": before, "tokens_after": 1, "new_ids": after}
        )
    trunk.grow_vocab(new.vocab_size, grown.parts)
    if (published.coordizer_dir().resolve(), published.trunk_dir().resolve()) != (
        coordizer_path,
        trunk_path,
    ):
        return {**report, "reason": "a new model was published meanwhile: nothing was changed"}
    trunk_version, coordizer_version = _publish(trunk, new)
    report.update(
        vocab_after=new.vocab_size,
        trunk_version=trunk_version.name,
        coordizer_version=coordizer_version.name,
    )
    log.info(
        "vocabulary %d → %d: added %s",
        coordizer.vocab_size,
        new.vocab_size,
        ", ".join(a["word"] for a in report["added"]),
    )
    return report


def _validated(words: Mapping[str, int], max_new: int) -> list[str]:
    """The words, most-typed first (ties alphabetically), after checking every one."""
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 0:
        raise InvalidWords(f"max_new: expected an integer ≥ 0, got {max_new!r}")
    if not isinstance(words, Mapping):
        raise InvalidWords(f"words: expected a map of word to count, got {type(words).__name__}")
    for word, count in words.items():
        if not isinstance(word, str) or not LETTER_WORD.fullmatch(word):
            raise InvalidWords(f"words[{word!r}]: a word must be letters only, without spaces")
        if len(word) > MAX_WORD_CHARS:
            raise InvalidWords(f"words[{word!r}]: longer than {MAX_WORD_CHARS} characters")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidWords(f"words[{word!r}]: the count must be an integer ≥ 1, got {count!r}")
    return sorted(words, key=lambda w: (-words[w], w))


def _load_trunk(directory: Path) -> Trunk:
    """The published trunk in the dtype it is stored in (re-published as it was, plus rows)."""
    _, stored = published.safetensors_summary(directory / "trunk.safetensors")
    return checkpoint.load_trunk(directory, dtype=_DTYPES.get(stored, torch.float32))


def _publish(trunk: Trunk, coordizer: Coordizer) -> tuple[Path, Path]:
    """Write both versions, then serve the trunk, then the coordizer (see the module doc)."""
    trunk_dest, coordizer_dest = published.trunk_dir(), published.coordizer_dir()
    written: list[tuple[Path, Path]] = []
    try:
        lineage = published.trunk_fingerprint()  # the grown trunk keeps the old one's identity

        def build(directory: Path) -> None:
            checkpoint.save_trunk(trunk, directory)
            (directory / published.LINEAGE).write_text(json.dumps({"fingerprint": lineage}))

        trunk_version = published.new_version(trunk_dest, build)
        written.append((trunk_dest, trunk_version))
        coordizer_version = published.new_version(coordizer_dest, coordizer.save)
        written.append((coordizer_dest, coordizer_version))
        published.make_current(trunk_dest, trunk_version)
        try:
            published.make_current(coordizer_dest, coordizer_version)
        except BaseException:
            _serve_the_old_trunk(trunk_dest)
            raise
    except BaseException:
        for dest, version in written:
            published.discard_version(dest, version)
        raise
    return trunk_version, coordizer_version


def _serve_the_old_trunk(dest: Path) -> None:
    """Point the trunk back at the version before the grown one (kept: KEEP_VERSIONS ≥ 2)."""
    try:
        published.rollback_dir(dest)
    except FileNotFoundError:  # the old trunk was a plain directory, replaced by the link
        log.error("the grown trunk stays served with the old coordizer (its new rows unused)")
