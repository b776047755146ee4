"""Chunking and basins against the coordizer's own reference computations (no database)."""

from __future__ import annotations

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


def test_fast_encoding_is_identical_across_block_boundaries(monkeypatch) -> None:
    coordizer = tiny.coordizer()
    text = "\n\n".join(tiny.corpus()[:20]) + "  \n\t tail  "
    monkeypatch.setattr(chunking, "_BLOCK_CHARS", 97)
    assert len(chunking._blocks(text)) > 10 and "".join(chunking._blocks(text)) == text
    assert chunking.encode(coordizer, text).tolist() == coordizer.encode(text)
