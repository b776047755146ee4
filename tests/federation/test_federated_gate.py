"""Federated evaluation (docs/flower.md, "Judging an average where the data is"): how an edge
splits its learnings between training and measuring, and the gate that decides on a round's
average with the edges' figures (`learning.federated_gate`), in process on the tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from constellation import published
from constellation.creation import Offer
from constellation.engine import tiny
from constellation.models import Kernel
from constellation.services import ensure_kernels
from federation.flower import evaluation, ffa
from federation.patterns import make
from learning.federated_gate import EdgeEvaluation, judge_federated
from learning.models import LearningEvent, LearningEventKind

KERNEL = tiny.ADAPTER_KERNEL


def patterns(n: int) -> list[Any]:
    return [make(KERNEL, "correction", f"user: question {i}?\nassistant:", f" answer {i}.", 0.9)
            for i in range(n)]  # fmt: skip


def test_an_edge_with_few_learnings_measures_them_all_and_says_they_are_held_in() -> None:
    few = patterns(evaluation.HOLD_OUT_FROM - 1)
    training, measured, heldout = evaluation.split_records(few)
    assert training == measured == sorted(few, key=lambda p: p.digest) and not heldout


def test_an_edge_with_enough_learnings_holds_every_fifth_out_of_training() -> None:
    many = patterns(12)
    training, measured, heldout = evaluation.split_records(many)
    assert heldout and len(measured) == 2 and len(training) == 10
    assert not {p.digest for p in measured} & {p.digest for p in training}
    assert evaluation.split_records(list(reversed(many)))[1] == measured  # (the order it came in)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return tiny.make_trained_model(tmp_path_factory.mktemp("gate-model"), steps=40)


@pytest.fixture
def central(settings: Any, tmp_path: Path, trained: Path) -> Path:
    settings.FEDERATION = "central"
    settings.DATA_DIR = tmp_path / "central"
    settings.MODELS_DIR = settings.DATA_DIR / "models"
    shutil.copytree(trained, settings.MODELS_DIR)
    ensure_kernels()
    return Path(settings.DATA_DIR)


def offer_of(b_scale: float) -> Offer:
    """The served adapter with its B scaled: 1.0 is the served version itself."""
    trunk = published.load_trunk()
    adapter, _ = published.load_adapter(KERNEL)
    a, b = ffa.split(adapter.cpu().float())
    changed = ffa.assemble(trunk.cfg, adapter.lora, a, {k: v * b_scale for k, v in b.items()})
    source = {"file": "flower-round-1.safetensors", "digest": "sha256:x", "model": "flower round 1",
              "via": "flower"}  # fmt: skip
    return Offer(KERNEL, changed, trunk.cfg, source)


def edges_said(before: float, after: float, distances: list[float] | None = None) -> Any:
    anchor = np.asarray(Kernel.objects.get(index=KERNEL).anchor)
    near = distances if distances is not None else [0.05, 0.06, 0.07]
    assert anchor.shape == (64,)
    return EdgeEvaluation(
        examples=3, before=before, after=after, heldout=False, distances=near, prompt_chars=40,
        chat=True, edges=[{"edge": "edge-a", "examples": 2}, {"edge": "edge-b", "examples": 1}],
    )  # fmt: skip


@pytest.mark.django_db
def test_an_average_the_edges_measured_better_and_that_harms_nothing_is_promoted(
    central: Path, django_capture_on_commit_callbacks: Any
) -> None:
    served = published.current_version(published.kernel_dir(KERNEL))
    with django_capture_on_commit_callbacks(execute=True):  # the version swaps at the commit
        verdict = judge_federated(offer_of(1.0), edges_said(4.0, 3.0))
    assert verdict.promoted, verdict.reason
    assert "measured on 3 learning(s) of 2 edge(s)" in verdict.reason
    figures = verdict.figures
    assert (figures["own_before"], figures["own_after"], figures["own_chunks"]) == (4.0, 3.0, 3)
    assert figures["served_change"] is not None and figures["edges"]["examples"] == 3
    now = published.current_version(published.kernel_dir(KERNEL))
    assert now is not None and now != served and now.name == verdict.version
    meta = published.version_meta(now) or {}
    assert meta["source"]["via"] == "flower" and meta["radius"] > 0
    assert meta["calibration"]["own_within"] >= 0.9  # the edges' prompts are within its radius
    event = LearningEvent.objects.filter(kernel_index=KERNEL).latest("id")
    assert event.kind == LearningEventKind.PROMOTED and "flower round 1" in event.message


@pytest.mark.django_db
@pytest.mark.parametrize(
    "said",
    [{"before": 3.0, "after": 3.2}, {"before": 3.0, "after": 3.0}],
)
def test_an_average_the_edges_did_not_measure_better_is_refused(
    central: Path, said: dict[str, float]
) -> None:
    served = published.current_version(published.kernel_dir(KERNEL))
    verdict = judge_federated(offer_of(1.0), edges_said(said["before"], said["after"]))
    assert not verdict.promoted and "did not improve" in verdict.reason
    assert published.current_version(published.kernel_dir(KERNEL)) == served
    event = LearningEvent.objects.filter(kernel_index=KERNEL).latest("id")
    assert event.kind == LearningEventKind.NOT_PROMOTED


@pytest.mark.django_db
def test_an_average_no_edge_measured_is_refused_saying_so(central: Path) -> None:
    nobody = EdgeEvaluation(0, None, None, False, edges=[{"edge": "edge-a", "why": "no reply"}])
    verdict = judge_federated(offer_of(1.0), nobody)
    assert not verdict.promoted and "no edge measured it" in verdict.reason


@pytest.mark.django_db
def test_an_average_that_harms_general_text_where_it_answers_is_refused(
    central: Path, settings: Any
) -> None:
    """B blown up 40×: the edges say their loss fell, but the general questions the router sends
    to it get worse (+0.6 % as served on the tiny model, whose losses sit near its uniform
    guess), beyond a tolerance of 0.1 %."""
    settings.PROMOTION_TOLERANCE = 0.001
    served = published.current_version(published.kernel_dir(KERNEL))
    verdict = judge_federated(offer_of(40.0), edges_said(4.0, 3.0, [2.5, 2.6, 2.7]))
    assert not verdict.promoted, verdict.reason
    assert "general held-out loss as served" in verdict.reason and "tolerance" in verdict.reason
    assert verdict.figures["served_change"] > 0.001 and verdict.figures["answered_after"] > 0
    assert published.current_version(published.kernel_dir(KERNEL)) == served
