"""Chunking and basins against the coordizer's own reference computations (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.uploads import small as tiny
from uploads import chunking


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
