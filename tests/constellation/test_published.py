"""The published layout: atomic versions, the two kept, the rollback to the one before, and a
kernel's state changes around training (real adapters written and read back, a real database)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from constellation import kernels, published
from constellation.engine import Adapter, AnchorUpdate, LoRAConfig, Trunk, e8, trunk_preset
from constellation.engine.geometry import fisher_rao, geodesic, uniform_basin
from constellation.models import Kernel, KernelStatus
from constellation.services import ensure_kernels

KERNEL = 5


@pytest.fixture
def models(settings, tmp_path: Path) -> Path:
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def _write(text: str) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "what.txt").write_text(text)

    return build


def test_it_publishes_each_version_whole_and_keeps_the_last_two(models: Path) -> None:
    dest = published.kernel_dir(KERNEL)
    made = [published.publish_dir(dest, _write(f"v{n}")) for n in range(3)]
    assert dest.is_symlink() and dest.resolve() == made[2].resolve()
    assert (dest / "what.txt").read_text() == "v2"
    assert published.versions(dest) == made[1:]  # the oldest is pruned
    assert not made[0].exists()


def test_it_rolls_back_to_the_version_before(models: Path) -> None:
    dest = published.coordizer_dir()
    first = published.publish_dir(dest, _write("first"))
    second = published.publish_dir(dest, _write("second"))
    assert published.rollback_dir(dest) == first
    assert (dest / "what.txt").read_text() == "first" and second.is_dir()
    with pytest.raises(FileNotFoundError, match="no earlier version"):
        published.rollback_dir(dest)  # only two are kept: nothing before the first
    third = published.publish_dir(dest, _write("third"))
    assert (dest / "what.txt").read_text() == "third"
    assert published.versions(dest) == [second, third]


def test_there_is_nothing_to_roll_back_to_before_a_second_version(models: Path) -> None:
    dest = published.trunk_dir()
    with pytest.raises(FileNotFoundError):
        published.rollback_dir(dest)
    published.publish_dir(dest, _write("only"))
    with pytest.raises(FileNotFoundError):
        published.rollback_dir(dest)
    assert (dest / "what.txt").read_text() == "only"


def _adapter(trunk: Trunk, seed: int) -> Adapter:
    torch.manual_seed(seed)
    adapter = Adapter(trunk.cfg, LoRAConfig(rank=2))
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.normal_()  # B starts at zero: make every weight tell the versions apart
    return adapter


@pytest.mark.django_db(transaction=True)  # the new version is served once its row commits
def test_a_kernel_learns_is_published_active_and_rolls_back(models: Path) -> None:
    ensure_kernels()
    trunk = Trunk(trunk_preset("tiny", vocab_size=512))
    assert kernels.kernel_learning(KERNEL) == KernelStatus.STANDBY
    assert Kernel.objects.get(index=KERNEL).status == KernelStatus.LEARNING
    kernels.kernel_restored(KERNEL, KernelStatus.STANDBY)
    assert Kernel.objects.get(index=KERNEL).status == KernelStatus.STANDBY

    before = e8.anchor(KERNEL)
    after = geodesic(before, uniform_basin(), 0.1)
    update = AnchorUpdate(
        KERNEL, [float(v) for v in before], [float(v) for v in after], 0.1, [0.0] * 64
    )
    first, second = _adapter(trunk, 1), _adapter(trunk, 2)
    version = kernels.kernel_trained(KERNEL, first, trunk.cfg, update, job=1, phi=0.4)
    kernel = Kernel.objects.get(index=KERNEL)
    assert kernel.status == KernelStatus.ACTIVE and kernel.last_trained_at is not None
    assert kernel.adapter_path == str(published.kernel_dir(KERNEL))
    assert fisher_rao(kernel.anchor, after) < 1e-9
    assert published.kernel_dir(KERNEL).resolve() == version.resolve()
    assert published.kernel_adapter_dirs() == {KERNEL: published.kernel_dir(KERNEL)}

    assert kernels.kernel_learning(KERNEL) == KernelStatus.ACTIVE  # it has an adapter now
    kernels.kernel_trained(KERNEL, second, trunk.cfg, update, job=2, phi=0.5)
    loaded, cfg = published.load_adapter(KERNEL)
    assert cfg == trunk.cfg
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in second.state_dict().items())

    assert kernels.rollback(KERNEL) == version
    loaded, _ = published.load_adapter(KERNEL)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in first.state_dict().items())
