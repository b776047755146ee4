"""The bulk encoder against the coordizer's own tokenizer: identical ids on every path."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constellation.engine import bulk_encode, tiny
from constellation.engine.coordizer import EOT

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
    assert bulk_encode.encode(coordizer, text).tolist() == coordizer.encode(text)


def test_fast_encoding_of_a_real_corpus_is_identical() -> None:
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus())
    assert bulk_encode.encode(coordizer, text).tolist() == coordizer.encode(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab é日1.,'\n\t\r \u00a0\u3000-_")), max_size=60))
def test_fast_encoding_matches_on_arbitrary_whitespace_and_punctuation(text: str) -> None:
    coordizer = tiny.coordizer()
    assert bulk_encode.encode(coordizer, text).tolist() == coordizer.encode(text)


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
    prep = bulk_encode._prepare(coordizer)
    by_hash = bulk_encode._units_by_hash(text, text.encode("utf-8"), EOT)
    by_str = bulk_encode._units_by_str(text, EOT)
    out: dict[str, list[int] | None] = {"hash": None}
    if by_hash is not None:
        # the same distinct units, and every unit of the text in the same order
        assert (
            sorted(distinct(by_hash)) == sorted(set(distinct(by_str)))
            and spelled(by_hash) == spelled(by_str) == text
        )
        ids = bulk_encode._tokenise_units(prep, *by_hash)
        out["hash"] = None if ids is None else ids.tolist()
    ids = bulk_encode._tokenise_units(prep, *by_str)
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
    saved = bulk_encode._BLOCK_BYTES
    bulk_encode._BLOCK_BYTES = 5  # (hypothesis runs many examples per test: no monkeypatch fixture)
    try:
        got = unit_paths(text)
    finally:
        bulk_encode._BLOCK_BYTES = saved
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
    monkeypatch.setattr(bulk_encode, "_BLOCK_BYTES", 97)
    monkeypatch.setattr(bulk_encode, "_BLOCK_CHARS", 97)
    assert len(bulk_encode._blocks(text)) > 10 and "".join(bulk_encode._blocks(text)) == text
    found = bulk_encode._units_by_hash(text, text.encode("utf-8"), EOT)
    assert found is not None and len(found[1]) > 10  # many blocks
    expected = coordizer.encode(text)
    assert unit_paths(text) == {"hash": expected, "str": expected}
    assert bulk_encode.encode(coordizer, text).tolist() == expected


def test_a_unit_too_long_to_hash_takes_the_str_path(monkeypatch) -> None:
    coordizer = tiny.coordizer()
    text = "a few words " + "x" * 200_000 + " and a few more\n"
    monkeypatch.setattr(bulk_encode, "_BLOCK_BYTES", 1000)  # the long run spans many blocks
    assert bulk_encode._units_by_hash(text, text.encode("utf-8"), EOT) is None
    assert bulk_encode.encode(coordizer, text).tolist() == coordizer.encode(text)


def test_hashes_that_disagree_send_the_text_to_the_str_path(monkeypatch) -> None:
    """A first hash that is the same for every unit: only the length tells units apart, so units
    of equal length are grouped wrongly and the second hash must catch it."""
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus()[:5])
    powers, calls = bulk_encode._powers, []

    def first_hash_blind(base: int, n: int) -> np.ndarray:
        calls.append(base)
        table = powers(base, n)
        return np.zeros_like(table) if len(calls) == 1 else table

    monkeypatch.setattr(bulk_encode, "_powers", first_hash_blind)
    assert bulk_encode._units_by_hash(text, text.encode("utf-8"), EOT) is None
    assert len(calls) == 4  # two bases, each with its inverse
    assert bulk_encode.encode(coordizer, text).tolist() == coordizer.encode(text)


def test_the_byte_whitespace_tables_are_what_re_calls_whitespace() -> None:
    table, others = bulk_encode._whitespace()
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code < 0xE000:
            continue  # surrogates have no UTF-8 encoding (and are not whitespace)
        char = chr(code)
        encoded = char.encode("utf-8")
        byte_says = bool(table[code]) if code < 128 else others.fullmatch(encoded) is not None
        assert byte_says == (re.match(r"\s", char) is not None), hex(code)


REPEATED = "the cat\u00a0sat on the mat,\u3000the cat sat again\u2003and again.\n\n" * 40


def test_encode_large_is_encode_and_takes_the_unit_path(monkeypatch) -> None:
    coordizer = tiny.coordizer()
    text = REPEATED + "\n\n".join(tiny.corpus()[:3]) + REPEATED

    def no_pieces(*args: object) -> np.ndarray:
        raise AssertionError("the plain path was taken")

    monkeypatch.setattr(bulk_encode, "_encode_pieces", no_pieces)
    ids = coordizer.encode_large(text)
    assert ids.dtype == np.int64 and ids.tolist() == coordizer.encode(text)


def test_encode_large_is_encode_with_the_end_of_text_token_inside() -> None:
    coordizer = tiny.coordizer()
    text = f"{REPEATED}{EOT} after\u00a0the end {EOT}{REPEATED}{EOT}"
    ids = coordizer.encode_large(text)
    assert ids.dtype == np.int64 and ids.tolist() == coordizer.encode(text)
    assert ids.tolist().count(coordizer.eot_id) == 3


def test_the_str_path_is_identical_to_the_hash_path() -> None:
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus()) + REPEATED
    by_str = bulk_encode.encode(coordizer, text, path="str")
    assert by_str.tolist() == bulk_encode.encode(coordizer, text).tolist() == coordizer.encode(text)
