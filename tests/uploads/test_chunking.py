"""Chunking and basins against the coordizer's own reference computations (no database)."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constellation.engine.coordizer import EOT
from tests.uploads import small as tiny
from uploads import chunking

TEXTS = [
    "",
    " ",
    "word",
    "  leading spaces and trailing   ",
    "a\n\nb\n  c\t\td \r\n e",
    "def f(x):\n    return x  # comment\n\n\nclass A:\n\tpass\n",
    "naïve café — 日本語のテキスト, emoji 🎉🎉 and ümlauts\u00a0nbsp\u2003em-space",
    f"before{EOT} after {EOT}\n{EOT}",
    "it's they're we'll I'd 's 'S  's",
    "123 4567 89.0 ,,, !!! ... ---",
]


@pytest.mark.parametrize("text", TEXTS)
def test_fast_encoding_is_identical_to_the_coordizer(text: str) -> None:
    coordizer = tiny.coordizer()
    assert chunking.encode(coordizer, text).tolist() == coordizer.encode(text)


def test_fast_encoding_of_a_real_corpus_is_identical() -> None:
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus())
    assert chunking.encode(coordizer, text).tolist() == coordizer.encode(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab é日1.,'\n\t\r \u00a0\u3000-_")), max_size=60))
def test_fast_encoding_matches_on_arbitrary_whitespace_and_punctuation(text: str) -> None:
    coordizer = tiny.coordizer()
    assert chunking.encode(coordizer, text).tolist() == coordizer.encode(text)


@pytest.mark.parametrize(
    ("n", "size", "overlap", "starts"),
    [
        (0, 8, 2, []),
        (5, 8, 2, [0]),
        (8, 8, 2, [0]),
        (9, 8, 2, [0, 6]),
        (14, 8, 2, [0, 6]),
        (15, 8, 2, [0, 6, 12]),
        (20, 5, 0, [0, 5, 10, 15]),
    ],
)
def test_windows_overlap_and_cover_every_token(n, size, overlap, starts) -> None:
    got = chunking.window_starts(n, size, overlap).tolist()
    assert got == starts
    if n:
        assert got[-1] + size >= n  # every token is in a window
        assert n - got[-1] > overlap or len(got) == 1  # no window is only the overlap


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunking.window_starts(10, 4, 4)


def test_chunks_overlap_their_texts_and_basins_are_the_coordizers() -> None:
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus()[:30]) + " 日本語 ünïcode"
    size, overlap = 64, 16
    chunks = chunking.chunk_text(coordizer, text, size, overlap)
    ids = coordizer.encode(text)
    starts = chunking.window_starts(len(ids), size, overlap)
    assert chunks.n_tokens == len(ids) and len(chunks.texts) == len(starts) > 3
    assert chunks.token_counts[:-1] == [size] * (len(starts) - 1)
    for i, start in enumerate(starts):
        window = ids[start : start + size]
        assert np.allclose(chunks.basins[i], coordizer.basin_of_ids(window), atol=1e-6)
        assert chunks.texts[i] in text
        if i + 1 < len(starts):  # consecutive chunks share `overlap` tokens of text
            # (a window edge inside a multi-byte character decodes as U+FFFD on its own; the
            # chunk's text extends to the whole character)
            shared = coordizer.decode(ids[start + size - overlap : start + size]).strip("\ufffd")
            assert shared and shared in chunks.texts[i][-len(shared) - 4 :]
            assert shared in chunks.texts[i + 1][: len(shared) + 4]
    assert text.startswith(chunks.texts[0]) and text.endswith(chunks.texts[-1])
    assert np.allclose(chunks.document_basin, coordizer.basin_of_ids(ids), atol=1e-12)
    assert np.allclose(chunks.basins.sum(axis=1), 1.0)


SPACES = "\u00a0\u3000\u2003\u2028\x85\x1c"  # non-ASCII whitespace, and an ASCII one re counts


def distinct(units: tuple[list[str], list[np.ndarray]]) -> list[str]:
    return [u for group in units[0] for u in group.split(EOT)] if units[0] else []


def spelled(units: tuple[list[str], list[np.ndarray]]) -> str:
    """The text the units spell, unit by unit."""
    table = distinct(units)
    return "".join(table[i] for sequence in units[1] for i in sequence.tolist())


def unit_paths(text: str) -> dict[str, list[int] | None]:
    """The token ids through each way of finding the units (None where the hash path declines)."""
    coordizer = tiny.coordizer()
    prep = chunking._prepare(coordizer)
    by_hash = chunking._units_by_hash(text, text.encode("utf-8"))
    by_str = chunking._units_by_str(text)
    out: dict[str, list[int] | None] = {"hash": None}
    if by_hash is not None:
        # the same distinct units, and every unit of the text in the same order
        assert (
            sorted(distinct(by_hash)) == sorted(set(distinct(by_str)))
            and spelled(by_hash) == spelled(by_str) == text
        )
        ids = chunking._tokenise_units(prep, *by_hash)
        out["hash"] = None if ids is None else ids.tolist()
    ids = chunking._tokenise_units(prep, *by_str)
    out["str"] = None if ids is None else ids.tolist()
    return out


@pytest.mark.parametrize("text", [t for t in TEXTS if t and EOT not in t] + [f"a{SPACES}b c"])
def test_both_unit_paths_are_identical_to_the_coordizer(text: str) -> None:
    expected = tiny.coordizer().encode(text)
    assert unit_paths(text) == {"hash": expected, "str": expected}


ALPHABET = list("ab é日1.,'\n\t\r -_" + SPACES)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=80))
def test_hash_path_matches_across_tiny_blocks(text: str) -> None:
    expected = tiny.coordizer().encode(text)
    saved = chunking._BLOCK_BYTES
    chunking._BLOCK_BYTES = 5  # (hypothesis runs many examples per test: no monkeypatch fixture)
    try:
        got = unit_paths(text)
    finally:
        chunking._BLOCK_BYTES = saved
    assert got["str"] == expected
    assert got["hash"] == expected


def test_fast_encoding_is_identical_across_block_boundaries(monkeypatch) -> None:
    coordizer = tiny.coordizer()
    words = "\n\n".join(tiny.corpus()[:20]).split(" ")
    # non-ASCII whitespace (2- and 3-byte characters) here and there, some at block edges
    text = "".join(
        w + (SPACES[i % len(SPACES)] if i % 7 == 0 else " ") for i, w in enumerate(words)
    )
    text += "  \n\t tail \u3000"
    monkeypatch.setattr(chunking, "_BLOCK_BYTES", 97)
    monkeypatch.setattr(chunking, "_BLOCK_CHARS", 97)
    assert len(chunking._blocks(text)) > 10 and "".join(chunking._blocks(text)) == text
    found = chunking._units_by_hash(text, text.encode("utf-8"))
    assert found is not None and len(found[1]) > 10  # many blocks
    expected = coordizer.encode(text)
    assert unit_paths(text) == {"hash": expected, "str": expected}
    assert chunking.encode(coordizer, text).tolist() == expected


def test_a_unit_too_long_to_hash_takes_the_str_path(monkeypatch) -> None:
    coordizer = tiny.coordizer()
    text = "a few words " + "x" * 200_000 + " and a few more\n"
    monkeypatch.setattr(chunking, "_BLOCK_BYTES", 1000)  # the long run spans many blocks
    assert chunking._units_by_hash(text, text.encode("utf-8")) is None
    assert chunking.encode(coordizer, text).tolist() == coordizer.encode(text)


def test_hashes_that_disagree_send_the_text_to_the_str_path(monkeypatch) -> None:
    """A first hash that is the same for every unit: only the length tells units apart, so units
    of equal length are grouped wrongly and the second hash must catch it."""
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus()[:5])
    powers, calls = chunking._powers, []

    def first_hash_blind(base: int, n: int) -> np.ndarray:
        calls.append(base)
        table = powers(base, n)
        return np.zeros_like(table) if len(calls) == 1 else table

    monkeypatch.setattr(chunking, "_powers", first_hash_blind)
    assert chunking._units_by_hash(text, text.encode("utf-8")) is None
    assert len(calls) == 4  # two bases, each with its inverse
    assert chunking.encode(coordizer, text).tolist() == coordizer.encode(text)


def test_the_byte_whitespace_tables_are_what_re_calls_whitespace() -> None:
    table, others = chunking._whitespace()
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code < 0xE000:
            continue  # surrogates have no UTF-8 encoding (and are not whitespace)
        char = chr(code)
        encoded = char.encode("utf-8")
        byte_says = bool(table[code]) if code < 128 else others.fullmatch(encoded) is not None
        assert byte_says == (re.match(r"\s", char) is not None), hex(code)
