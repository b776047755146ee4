import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constellation.engine.coordizer import EOT, Coordizer, unigram_entropy
from constellation.engine.geometry import fisher_rao


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_it_round_trips_any_unicode_text(coordizer, text):
    assert coordizer.decode(coordizer.encode(text)) == text


def test_round_trip_of_awkward_text(coordizer):
    awkward = ["", " ", "  \n\t\r\n", "日本語 🎉 e\u0301", "\x00\x01", f"a{EOT}b", "\ud7ff\ue000"]
    for text in awkward:
        assert coordizer.decode(coordizer.encode(text)) == text


def test_coords_are_basins_and_text_basins_separate_topics(coordizer):
    assert coordizer.coords.shape == (coordizer.vocab_size, 64)
    np.testing.assert_allclose(coordizer.coords.sum(1), 1.0)
    a = coordizer.text_basin("Return the absolute value of a number.")
    b = coordizer.text_basin("Return the absolute value of the argument.")
    c = coordizer.text_basin("The socket connects to a remote network host over TCP.")
    assert a.sum() == pytest.approx(1.0)
    assert fisher_rao(a, b) < fisher_rao(a, c)
    np.testing.assert_allclose(coordizer.text_basin(""), np.full(64, 1 / 64))


def test_it_saves_and_loads(coordizer, workdir):
    coordizer.save(workdir / "coord")
    assert (workdir / "coord" / "basin_coords.npy").is_file()
    assert (workdir / "coord" / "tokenizer.json").is_file()
    loaded = Coordizer.load(workdir / "coord")
    text = "def f(x):\n    return x ** 2  # café"
    assert loaded.encode(text) == coordizer.encode(text)
    np.testing.assert_array_equal(loaded.coords, coordizer.coords)
    np.testing.assert_array_equal(loaded.text_basin(text), coordizer.text_basin(text))
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        Coordizer.load(workdir / "missing")


def test_expansion_keeps_every_existing_id(coordizer):
    new_texts = ["zyxwvut qqqzzz " * 20, "Ωμέγα λάμβδα κάππα " * 20] * 5
    bigger = coordizer.expand(new_texts, n_new=40)
    assert coordizer.vocab_size < bigger.vocab_size <= coordizer.vocab_size + 40
    old_vocab = coordizer.tokenizer.get_vocab()
    new_vocab = bigger.tokenizer.get_vocab()
    assert all(new_vocab[t] == i for t, i in old_vocab.items())
    np.testing.assert_array_equal(bigger.coords[: coordizer.vocab_size], coordizer.coords)
    sample = "Return the absolute value of a number."
    assert bigger.encode(sample) == coordizer.encode(sample)
    assert len(bigger.encode(new_texts[1])) < len(coordizer.encode(new_texts[1]))
    assert bigger.decode(bigger.encode(new_texts[1])) == new_texts[1]
    np.testing.assert_allclose(bigger.coords.sum(1), 1.0)


def test_unigram_entropy():
    assert unigram_entropy([0, 1, 0, 1], 4) == pytest.approx(np.log(2))
