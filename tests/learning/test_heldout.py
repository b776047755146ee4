"""The held-out split (by chunk, deterministic), the general held-out set, the promotion rule and
the routing radius's calibration — the parts of the promotion gate that need no training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from constellation.engine import e8, fisher_rao, geodesic
from learning import datasets, promotion
from learning.datasets import HELDOUT_FRACTION, split_records, text_chunks
from tests.learning import tiny


def _document() -> str:
    return "\n\n".join(tiny.corpus()[:40])


def _texts(examples: list) -> list[str]:
    return [e["text"] for e in examples]


def test_chunks_cut_a_text_at_boundaries_and_give_it_back_whole() -> None:
    text = _document()
    chunks = text_chunks(text)
    assert "".join(chunks) == text
    size = datasets.CHUNK_CHARS
    assert all(size // 2 <= len(c) <= size for c in chunks[:-1])
    assert size // 4 <= len(chunks[-1]) < size + size // 4  # a short tail joins the one before
    cut_at = [c[-1] for c in chunks[:-1]]
    assert set(cut_at) <= {"\n", " "}  # after a paragraph, a line, a sentence or a word


def test_it_holds_out_the_same_chunks_every_time_disjoint_from_training() -> None:
    records = [{"text": _document()}]
    first, again = split_records(records), split_records(records)
    assert first.held_in == again.held_in and first.held_out == again.held_out
    held_out = _texts(first.held_out)
    chunks = text_chunks(records[0]["text"])
    assert 0.10 <= len(held_out) / len(chunks) <= 0.20, (len(held_out), len(chunks))
    # Disjoint: every chunk is on exactly one side, and the held-in text is the rest, in order.
    training = "".join(_texts(first.held_in))
    assert sorted(held_out + [c for c in chunks if c not in held_out]) == sorted(chunks)
    assert len(training) + sum(map(len, held_out)) == len(records[0]["text"])
    assert not any(chunk in training for chunk in held_out)
    # What decides is the chunk's own hash: the same chunk in another upload falls the same way.
    for chunk in chunks:
        score = int.from_bytes(hashlib.sha256(chunk.encode()).digest()[:8], "big") / 2**64
        assert (chunk in held_out) == (score < HELDOUT_FRACTION)


def test_a_dataset_of_two_chunks_or_more_holds_one_out_and_keeps_one() -> None:
    for n in range(2, 7):
        records = [{"prompt": f"question {i}?", "completion": f"answer {i}."} for i in range(n)]
        split = split_records(records)
        assert len(split.held_out) >= 1 and len(split.held_in) >= 1
        assert sorted(map(str, split.held_in + split.held_out)) == sorted(map(str, records))
    single = split_records([{"text": "one short note"}])
    assert single.held_in == [{"text": "one short note"}] and single.held_out == []


def test_the_general_heldout_set_is_a_fixed_bounded_sample_leaving_out_training_text(
    settings, tmp_path: Path
) -> None:
    settings.MODELS_DIR = tmp_path / "models"
    tiny.save_coordizer(settings.MODELS_DIR)  # and the tiny corpus as the bootstrap corpus
    general = datasets.general_heldout()
    assert general == datasets.general_heldout()
    assert len(general) == datasets.GENERAL_CHUNKS
    longest = datasets.CHUNK_CHARS + datasets.CHUNK_CHARS // 4
    assert all(len(c.strip()) >= datasets.MIN_GENERAL_CHARS and len(c) < longest for c in general)
    trained = [{"text": "\n\n".join(tiny.corpus())}]
    assert not any(chunk in trained[0]["text"] for chunk in datasets.general_heldout(trained))


def _at(anchor: np.ndarray, distances: list[float]) -> np.ndarray:
    """Basins at the given Fisher–Rao distances from `anchor`, toward different corners."""
    out = []
    for i, d in enumerate(distances):
        target = np.eye(64)[i % 64] + 1e-3  # (64,) nearly all on one coordinate
        total = fisher_rao(anchor, target)
        assert d < total
        out.append(geodesic(anchor, target, d / total))
    return np.stack(out)


def test_the_radius_lies_midway_between_its_own_chunks_and_unrelated_text() -> None:
    anchor = e8.anchor(7)
    own = _at(anchor, [0.2 + 0.03 * i for i in range(10)])  # 0.20 … 0.47
    unrelated = _at(anchor, [1.0 + 0.05 * i for i in range(20)])  # 1.00 … 1.95
    assert np.allclose(promotion.distances(anchor, own), [0.2 + 0.03 * i for i in range(10)])
    c = promotion.calibrate(anchor, own, unrelated)
    assert c.cover == pytest.approx(0.44)  # the 9th of 10: ≥ 90 % covered
    assert c.unrelated_floor == pytest.approx(1.10)  # 10 % of 20 lie below the 3rd
    assert not c.overlap and c.radius == pytest.approx((0.44 + 1.10) / 2)
    assert c.own_within == pytest.approx(1.0) and c.unrelated_within == pytest.approx(0.0)


def test_an_overlapping_kernel_gets_a_radius_below_unrelated_text() -> None:
    anchor = e8.anchor(7)
    own = _at(anchor, [0.55 + 0.1 * i for i in range(10)])  # 0.55 … 1.45
    unrelated = _at(anchor, [0.8 + 0.05 * i for i in range(20)])  # 0.80 … 1.75
    c = promotion.calibrate(anchor, own, unrelated)
    assert c.overlap and c.unrelated_floor is not None
    assert c.radius < c.unrelated_floor == pytest.approx(0.90)  # just below it
    assert c.own_within == pytest.approx(0.4)  # it answers only its closest chunks
    assert c.unrelated_within is not None and c.unrelated_within <= promotion.UNRELATED


def _figures(
    own: tuple[float, float], served: tuple[float, float], all_text: tuple[float, float]
) -> promotion.Figures:
    return promotion.Figures(*own, *all_text, *served, 6.0, 5.0, True, 4, 32, 0, 3)


def test_the_gate_wants_its_own_loss_down_and_the_general_loss_as_served_within_tolerance() -> None:
    promoted, why = promotion.decide(_figures((7.0, 4.0), (5.0, 5.09), (5.0, 5.4)), 0.02)
    assert promoted and "as served 5.000 → 5.090 (+1.8%; it answers 3/32" in why
    assert "+8.0% with it on all of them" in why  # reported, not decisive
    promoted, why = promotion.decide(_figures((7.0, 4.0), (5.0, 5.2), (5.0, 5.2)), 0.02)
    assert not promoted and "(+4.0%; it answers" in why and "beyond the 2.0% tolerance" in why
    promoted, why = promotion.decide(_figures((4.0, 4.0), (5.0, 4.0), (5.0, 4.0)), 0.02)
    assert not promoted and "held-out loss 4.000 → 4.000 did not improve" in why


def test_the_backstop_refuses_harm_to_all_general_text_beyond_five_tolerances() -> None:
    promoted, why = promotion.decide(_figures((7.0, 4.0), (5.0, 5.0), (5.0, 5.6)), 0.02)
    assert not promoted and "all general text the general held-out loss rose +12.0%" in why
    assert "beyond the 10.0% backstop" in why
