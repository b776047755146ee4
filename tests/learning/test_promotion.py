"""The promotion gate, for real: a tiny trunk pretrained on the CPU. An adapter job on a good
dataset is promoted (published with its calibrated radius), and so is one on a distinctive
invented document (its own held-out loss falls; its radius takes in no general text, so the
general loss as served does not move, though with it on all general text it would rise). One on
random characters is not: as served it answers no general chunk, but with it on all general text
the loss rises beyond the backstop (5 × the tolerance) — no dataset was found that harms general
text *as served* on the tiny preset (docs/training.md). The job completes, says why, and the
previous version keeps serving (same directory, same anchor, same greedy answer)."""

from __future__ import annotations

import hashlib
import random
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from django.conf import settings
from django.core.files.base import ContentFile

from constellation import published
from constellation.engine import (
    Constellation,
    TokenStream,
    TrainConfig,
    Trainer,
    Trunk,
    save_trunk,
    trunk_preset,
)
from constellation.models import Kernel, KernelStatus
from constellation.services import ensure_kernels
from learning import promotion, runner, services
from learning.models import FineTuneJob, JobKind, JobStatus, LearningEvent, LearningEventKind
from tests.learning import tiny
from uploads.models import KnowledgeFile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

KERNEL = 9
TRAIN = {**tiny.FAST_PRETRAIN, "steps": 40, "learning_rate": 3e-3}


@pytest.fixture
def node(settings, tmp_path: Path) -> Path:
    """A node with the tiny coordizer, the tiny corpus as its bootstrap corpus and a trunk
    pretrained on it."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    settings.MEDIA_ROOT = str(tmp_path / "uploads")
    settings.TRAIN_DEVICE = "cpu"
    settings.TRAIN_THREADS = 1
    torch.set_num_threads(1)  # as the runner will: the machine's cores are shared
    tiny.save_coordizer(settings.MODELS_DIR)
    coordizer = tiny.coordizer()
    stream = TokenStream.from_examples(list(tiny.corpus()), coordizer.encode, coordizer.eot_id)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coordizer.vocab_size))
    config = TrainConfig(steps=150, batch_size=4, seq_len=32, lr=3e-3, metrics_every=1000)
    Trainer(trunk, config, stream).fit()
    save_trunk(trunk, settings.MODELS_DIR / "trunk")
    ensure_kernels()
    return Path(settings.MODELS_DIR)


def _upload(name: str, text: str) -> KnowledgeFile:
    data = text.encode()
    knowledge = KnowledgeFile(
        original_name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
    )
    knowledge.file.save(name, ContentFile(data))
    return knowledge


def _train(upload: KnowledgeFile, steps: int = 40, kernel: int = KERNEL) -> FineTuneJob:
    job = services.queue_job(
        kind=JobKind.ADAPTER,
        created_by=None,
        hyperparameters={**TRAIN, "steps": steps},
        target_kernels=[kernel],
        dataset_ids=[upload.pk],
    )
    assert runner.run_next_job("test@host:1") == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    return job


def _greedy(prompt: str) -> str:
    """The kernel's answer with what is published now (greedy, as a server would load it)."""
    constellation = Constellation(published.load_trunk(), published.load_coordizer())
    constellation.load_adapter(KERNEL, published.load_adapter(KERNEL)[0])
    chunks = constellation.reply(prompt, {"temperature": 0, "num_predict": 12}, kernel=KERNEL)
    return "".join(chunk.text for chunk in chunks)


INVENTED = "\n\n".join(  # a document the corpus has nothing like
    f"The Vellmar archive, entry {i}: the river Quoss rises in the Tarnwick hills and feeds the "
    f"glass orchards of Mirevale, where the keepers harvest amberfruit every {i % 7 + 2}th moon. "
    f"Keeper Ildra Fenwhistle recorded that the orchard bell rings {i % 5 + 3} times at dusk, "
    f"and that the Quoss ferrymen trade salt for lanternwax at the Brindle market."
    for i in range(60)
)


def _noise(chars: int) -> str:
    """Random characters: nothing a language model should learn."""
    rng = random.Random(12)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \n"
    return "".join(rng.choices(alphabet, k=chars))


def test_the_gate_promotes_a_good_dataset_and_keeps_serving_it_when_a_harmful_one_comes(
    node: Path,
) -> None:
    good = _train(_upload("notes.txt", "\n\n".join(tiny.corpus()[:40])))
    assert good.evaluation["promoted"] == [KERNEL] and good.evaluation["not_promoted"] == []
    (row,) = good.evaluation["kernels"]
    figures = row["heldout"]
    assert figures["own_is_heldout"] and figures["own_chunks"] >= 2
    assert figures["own_after"] < figures["own_before"]
    assert figures["served_change"] <= 0.02 and figures["general_chunks"] == 32
    assert figures["general_change"] <= 0.1 and figures["answered_before"] == 0
    meta = published.kernel_meta(KERNEL)
    assert meta is not None
    assert meta["radius"] == row["radius"] and meta["job"] == good.pk
    assert meta["heldout"] == figures
    calibration = meta["calibration"]  # docstrings like the general set's: they overlap
    assert calibration["overlap"] or calibration["own_within"] >= 0.9
    assert calibration["unrelated_within"] <= 0.1
    kernel = Kernel.objects.get(index=KERNEL)
    assert kernel.status == KernelStatus.ACTIVE and np.allclose(meta["anchor"], kernel.anchor)
    (promoted,) = LearningEvent.objects.filter(job=good, kind=LearningEventKind.PROMOTED)
    assert promoted.kernel_index == KERNEL
    assert promoted.message.startswith(f"kernel {KERNEL} promoted: held-out loss")
    done = LearningEvent.objects.get(job=good, kind=LearningEventKind.JOB)
    assert f"completed: kernel {KERNEL} promoted: held-out loss" in done.message
    served, anchor, answer = published.kernel_dir(KERNEL).resolve(), kernel.anchor, _greedy("def")

    harmful = _train(_upload("noise.txt", _noise(12_000)), steps=100)
    assert harmful.evaluation["promoted"] == [] and harmful.evaluation["not_promoted"] == [KERNEL]
    (row,) = harmful.evaluation["kernels"]
    figures = row["heldout"]
    assert figures["own_after"] < figures["own_before"]  # it did learn its noise
    # As served it answers no general chunk (its radius keeps it off general text) ...
    assert figures["answered_after"] == 0 and abs(figures["served_change"]) < 0.005, figures
    # ... but on all general text it really does harm (measured +16.9 %): the backstop refuses it.
    assert figures["general_change"] > 0.14, figures
    assert "beyond the 10.0% backstop" in row["reason"]
    assert row["serving_before"] == served.name
    # Nothing was published: the previous version keeps serving, with its anchor and radius.
    assert published.kernel_dir(KERNEL).resolve() == served
    assert len(published.versions(published.kernel_dir(KERNEL))) == 1
    assert published.kernel_meta(KERNEL) == meta
    kernel = Kernel.objects.get(index=KERNEL)
    assert kernel.status == KernelStatus.ACTIVE and kernel.anchor == anchor
    assert _greedy("def") == answer
    (kept,) = LearningEvent.objects.filter(job=harmful, kind=LearningEventKind.NOT_PROMOTED)
    assert kept.message.startswith(f"kernel {KERNEL} not promoted: with it on all general text")
    assert kept.message.endswith(f"{served.name} keeps serving")
    (step,) = LearningEvent.objects.filter(job=harmful, kind=LearningEventKind.ANCHOR)
    assert step.data["applied"] is False and "not applied" in step.message


def test_a_distinctive_invented_document_is_promoted(node: Path) -> None:
    """The product's main case: a document unlike anything it knows. Its own held-out loss falls
    (measured −4.4 %); its radius takes in no general chunk, so the general loss as served stays
    put, while with it on all general text it would rise (measured +3.3 % and +8.3 %, within the
    backstop)."""
    job = _train(_upload("vellmar.txt", INVENTED))
    assert job.evaluation["promoted"] == [KERNEL], job.evaluation["kernels"][0]["reason"]
    (row,) = job.evaluation["kernels"]
    figures = row["heldout"]
    assert figures["own_after"] < 0.97 * figures["own_before"]
    assert figures["answered_after"] == 0 and figures["served_change"] == 0.0
    # Within the backstop (ALL_TEXT_FACTOR × the tolerance). The figure moves with the CPU's
    # arithmetic: +3.3 % where this was written, +8.3 % on a 2026-12-07 machine (same code).
    backstop = promotion.ALL_TEXT_FACTOR * settings.PROMOTION_TOLERANCE
    assert 0.0 < figures["general_change"] <= backstop
    assert not row["calibration"]["overlap"] and row["calibration"]["own_within"] >= 0.9
    assert "general held-out loss as served" in row["reason"]
    meta = published.kernel_meta(KERNEL)
    assert meta is not None and meta["radius"] == row["radius"]
