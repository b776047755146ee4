"""`learning.vocabulary.expand_vocabulary` on a tiny real trained model published in a models dir
of the test's own: what it adds and reports, the publishing order, what a failure leaves served,
refused input, and the grown model served by a running inference service without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from constellation import published
from constellation.engine import Coordizer, checkpoint, tiny
from constellation.inference import InferenceService
from learning import promotion
from learning.vocabulary import InvalidWords, expand_vocabulary

KERNEL = tiny.ADAPTER_KERNEL
GREEDY = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 300 steps, not tiny's 40: that trunk answers every prompt with newlines only
    torch.manual_seed(0)  # the trunk's initialisation: the same model on every run
    return tiny.make_trained_model(tmp_path_factory.mktemp("trained"), steps=300)


@pytest.fixture
def models(settings, tmp_path: Path, trained: Path) -> Path:
    """The tiny model published as training publishes it (versioned links), in a dir of its own."""
    settings.MODELS_DIR = tmp_path / "models"
    shutil.copytree(trained, settings.MODELS_DIR)
    published.publish_coordizer(published.load_coordizer())
    published.publish_trunk(published.load_trunk())
    return Path(settings.MODELS_DIR)


def served() -> tuple[Path | None, Path | None]:
    return (
        published.current_version(published.trunk_dir()),
        published.current_version(published.coordizer_dir()),
    )


def on_disk() -> list[Path]:
    return published.versions(published.trunk_dir()) + published.versions(published.coordizer_dir())


def test_it_adds_the_most_typed_words_and_publishes_the_trunk_first(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_coordizer, old_trunk = published.load_coordizer(), published.load_trunk()
    v = old_coordizer.vocab_size
    order: list[str] = []
    make_current = published.make_current

    def recorded(dest: Path, version: Path, keep: int = published.KEEP_VERSIONS) -> None:
        order.append(dest.name)
        make_current(dest, version, keep)

    monkeypatch.setattr(published, "make_current", recorded)
    words = {"qigong": 3, "geodesic": 9, "the": 50, "Fisher": 3}
    report = expand_vocabulary(words, max_new=2)

    assert order == ["trunk", "coordizer"]
    assert report["added"] == [
        {"word": "geodesic", "tokens_before": 5, "tokens_after": 1, "new_ids": [v]},
        {"word": "Fisher", "tokens_before": 4, "tokens_after": 1, "new_ids": [v + 1]},
    ]
    assert report["skipped"] == [
        {"word": "the", "why": "it is one token already"},
        {"word": "qigong", "why": "the limit of 2 new tokens is reached"},
    ]
    assert (report["vocab_before"], report["vocab_after"]) == (v, v + 2)
    trunk_version, coordizer_version = served()
    assert trunk_version is not None and coordizer_version is not None
    assert (report["trunk_version"], report["coordizer_version"]) == (
        trunk_version.name,
        coordizer_version.name,
    )
    assert "reason" not in report

    coordizer, trunk = published.load_coordizer(), published.load_trunk()
    assert coordizer.encode(" geodesic") == [v] and coordizer.encode(" Fisher") == [v + 1]
    assert len(coordizer.encode(" qigong")) == 5
    text = "".join(tiny.corpus()[:5])
    assert coordizer.encode(text) == old_coordizer.encode(text)
    assert trunk.cfg.vocab_size == v + 2
    assert torch.equal(trunk.embed.weight[:v], old_trunk.embed.weight)
    # the kernel's adapter, trained for the smaller vocabulary, still counts as served
    adapter, name = promotion.serving_adapter(KERNEL, trunk)
    assert adapter is not None and name != "the bare trunk"


def test_a_failure_before_the_coordizer_is_served_leaves_the_old_pair(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, kept = served(), on_disk()
    make_current = published.make_current

    def fails_on_the_coordizer(dest: Path, version: Path, keep: int = 2) -> None:
        if dest == published.coordizer_dir():
            raise OSError("no space left on device")
        make_current(dest, version, keep)

    monkeypatch.setattr(published, "make_current", fails_on_the_coordizer)
    with pytest.raises(OSError, match="no space"):
        expand_vocabulary({"qigong": 2}, max_new=1)
    assert served() == before and on_disk() == kept  # the grown trunk was swapped back out
    monkeypatch.undo()

    def save_fails(self: Coordizer, directory: Path) -> Path:
        raise OSError("read-only file system")

    monkeypatch.setattr(Coordizer, "save", save_fails)
    with pytest.raises(OSError, match="read-only"):
        expand_vocabulary({"qigong": 2}, max_new=1)
    assert served() == before and on_disk() == kept
    assert published.load_trunk().cfg.vocab_size == published.load_coordizer().vocab_size


@pytest.mark.parametrize(
    ("words", "max_new", "reason"),
    [
        ({"the": 5, "and": 2}, 4, "none of the words can become a new token"),
        ({"qigong": 5}, 0, "max_new is 0"),
        ({}, 4, "no words were given"),
    ],
)
def test_nothing_to_add_publishes_nothing(
    models: Path, words: dict[str, int], max_new: int, reason: str
) -> None:
    before, fingerprint = served(), published.fingerprint()
    report = expand_vocabulary(words, max_new)
    assert report["reason"] == reason and report["added"] == []
    assert report["trunk_version"] is None and report["coordizer_version"] is None
    assert report["vocab_after"] == report["vocab_before"] == published.load_coordizer().vocab_size
    assert served() == before and published.fingerprint() == fingerprint


def test_without_a_published_model_there_is_nothing_to_grow(settings, tmp_path: Path) -> None:
    settings.MODELS_DIR = tmp_path / "empty"
    report = expand_vocabulary({"qigong": 1}, 1)
    assert report["reason"] == "there is no published model yet" and report["added"] == []


@pytest.mark.parametrize(
    ("words", "max_new", "message"),
    [
        ({"two words": 1}, 1, r"words\['two words'\]: a word must be letters only"),
        ({"abc1": 1}, 1, "letters only"),
        ({" qigong": 1}, 1, "letters only"),
        ({"": 1}, 1, "letters only"),
        ({"q" * 65: 1}, 1, "longer than 64 characters"),
        ({"qigong": 0}, 1, r"words\['qigong'\]: the count must be an integer ≥ 1, got 0"),
        ({"qigong": True}, 1, "the count must be an integer"),
        ({"qigong": 1}, -1, "max_new: expected an integer ≥ 0, got -1"),
        ({"qigong": 1}, 1.5, "max_new"),
        (["qigong"], 1, "words: expected a map of word to count, got list"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(
    models: Path, words: Any, max_new: Any, message: str
) -> None:
    before = served()
    with pytest.raises(InvalidWords, match=message):
        expand_vocabulary(words, max_new)
    assert served() == before


@pytest.mark.django_db
def test_a_running_service_serves_the_grown_vocabulary_without_a_restart(models: Path) -> None:
    service = InferenceService()
    try:
        first, _ = service._ensure_loaded(None)
        v = first.coordizer.vocab_size
        prompt = "A kernel of"  # no new word: the kernel answers as it did
        before = "".join(c.text for c in first.constellation.reply(prompt, GREEDY, KERNEL))
        assert len(set(before.split())) > 2

        report = expand_vocabulary({"qigong": 4}, max_new=1)

        second, load_ns = service._ensure_loaded(None)  # the next request's check
        assert second is not first and load_ns > 0
        assert second.coordizer.vocab_size == second.constellation.trunk.cfg.vocab_size == v + 1
        assert second.coordizer.encode(" qigong") == report["added"][0]["new_ids"]
        assert KERNEL in second.constellation.bank.slot_of  # the adapter was loaded again
        after = "".join(c.text for c in second.constellation.reply(prompt, GREEDY, KERNEL))
        assert after == before
        chunks = list(second.constellation.reply("What is qigong", GREEDY, KERNEL))
        assert chunks[-1].done
    finally:
        service.unload()


def test_the_old_trunk_file_format_is_kept(models: Path) -> None:
    dtype = published.safetensors_summary(published.trunk_dir() / "trunk.safetensors")[1]
    expand_vocabulary({"qigong": 1}, 1)
    path = published.trunk_dir() / "trunk.safetensors"
    assert published.safetensors_summary(path)[1] == dtype
    assert checkpoint.load_trunk(published.trunk_dir()).cfg.vocab_size == (
        published.load_coordizer().vocab_size
    )
