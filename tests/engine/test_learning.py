"""It really learns (issue item 8): tiny preset, CPU, real data, no mocks.

1. Pretraining on a few hundred KB brings validation loss well below the unigram entropy.
2. Fine-tuning one kernel on a distinctive document lowers that kernel's loss on held-out text
   from it, another kernel's output stays bit-identical, and queries from the document route to
   the kernel whose anchor took the geodesic step toward the document's basin.
"""

import numpy as np
import pytest
import torch

from constellation.engine import e8
from constellation.engine.callbacks import TelemetryCallback, default_guards
from constellation.engine.config import LoRAConfig, trunk_preset
from constellation.engine.coordizer import unigram_entropy
from constellation.engine.data import TokenStream
from constellation.engine.generation import Request, generate
from constellation.engine.geometry import fisher_rao, geodesic
from constellation.engine.model import Adapter, LoRABank, LoRARoute, Trunk
from constellation.engine.router import Router
from constellation.engine.sampling import SamplingOptions
from constellation.engine.trainer import TrainConfig, Trainer, evaluate_loss

pytestmark = pytest.mark.slow


def distinctive_document(seed: int, names, verbs, objects, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(n)]


HARBOR = (
    ["Quillmere", "The zorblax lantern", "Old Maribeth Vantorre", "The copper heron"],
    ["glimmers above", "sings softly to", "drifts toward", "remembers", "guards"],
    ["the salt marsh at dusk", "seven brass bells", "a ledger of tides", "the heron's nest"],
)
FORGE = (
    ["Grubnak the smith", "The iron golem Kzar", "Ninefold Anvil", "Dvorrik"],
    ["hammers", "quenches", "tempers", "forges"],
    ["a blade of black steel", "nine glowing rivets", "the ember crown", "molten slag"],
)


@pytest.fixture(scope="module")
def pretrained(coordizer, corpus):
    stream = TokenStream.from_examples(corpus, coordizer.encode, coordizer.eot_id)
    train, val = stream.split(0.1)
    torch.manual_seed(0)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coordizer.vocab_size))
    cfg = TrainConfig(steps=200, batch_size=16, seq_len=128, lr=3e-3, metrics_every=10)
    telemetry = TelemetryCallback()
    trainer = Trainer(trunk, cfg, train, val, callbacks=[telemetry, *default_guards()])
    result = trainer.fit()
    return trunk.eval(), trainer, result, train, val, telemetry


def test_pretraining_brings_validation_loss_well_below_the_unigram_entropy(pretrained, coordizer):
    _trunk, trainer, result, train, val, telemetry = pretrained
    unigram = unigram_entropy(train.ids, coordizer.vocab_size)
    val_loss = trainer.evaluate(val, max_windows=64)
    assert result.status == "completed"
    # the calibrated guards stay quiet on a healthy run whose loss is falling (docs/metrics.md)
    assert [e["kind"] for e in result.events] == []
    assert val_loss < unigram - 0.5, f"val loss {val_loss:.3f} vs unigram entropy {unigram:.3f}"
    assert len(result.readings) == 20  # Φ/κ every 10 steps
    assert all(0 <= r["phi"] < 1 and r["kappa"] >= 1 for r in result.readings)
    assert telemetry.records[-1]["phi"] == result.readings[-1]["phi"]


def test_fine_tuning_one_kernel_learns_its_document_and_leaves_others_untouched(
    pretrained, coordizer
):
    trunk, *_ = pretrained
    doc = distinctive_document(1, *HARBOR, n=400)
    train_doc = TokenStream.from_examples([" ".join(doc)], coordizer.encode, coordizer.eot_id)
    held = distinctive_document(2, *HARBOR, n=60)
    held_stream = TokenStream.from_examples([" ".join(held)], coordizer.encode, coordizer.eot_id)

    kernel, other = e8.kernel_for_role("HEART"), e8.kernel_for_role("MEMORY")
    lora = LoRAConfig(rank=8)
    bank = LoRABank(trunk.cfg, lora, n_slots=3)
    other_adapter = Adapter(trunk.cfg, lora, seed=5)
    with torch.no_grad():
        for p in other_adapter.b.values():
            p.normal_(0, 0.01)
    bank.load(other, other_adapter)

    cfg = TrainConfig(mode="adapter", steps=60, batch_size=8, seq_len=64, lr=3e-3)
    probe = torch.tensor([coordizer.encode("The copper heron remembers")])
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=12)
    with torch.no_grad():
        other_logits = trunk(probe, route=LoRARoute.for_rows(bank, [bank.slot_of[other]])).logits
    other_reply = generate(trunk, [Request(probe[0].tolist(), [(other, 1.0)], greedy)], bank=bank)
    before = evaluate_loss(trunk, held_stream, cfg)

    adapter = Adapter(trunk.cfg, lora, seed=kernel)
    data_basin = coordizer.basin_of_ids(train_doc.ids.tolist())
    trainer = Trainer(
        trunk,
        cfg,
        train_doc,
        adapter=adapter,
        kernel=kernel,
        anchor=e8.anchor(kernel),
        data_basin=data_basin,
    )
    result = trainer.fit()
    bank.load(kernel, adapter)
    after = evaluate_loss(trunk, held_stream, cfg, LoRARoute.for_rows(bank, [bank.slot_of[kernel]]))
    assert after < before - 1.0, f"held-out loss {before:.3f} → {after:.3f}"

    with torch.no_grad():
        again = trunk(probe, route=LoRARoute.for_rows(bank, [bank.slot_of[other]])).logits
    assert torch.equal(again, other_logits)  # bit-identical
    assert generate(trunk, [Request(probe[0].tolist(), [(other, 1.0)], greedy)], bank=bank) == (
        other_reply
    )

    update = result.anchor_update
    assert update is not None
    assert update.kernel == kernel
    moved = np.array(update.after)
    assert fisher_rao(moved, data_basin) == pytest.approx(
        (1 - cfg.anchor_step) * fisher_rao(e8.anchor(kernel), data_basin), abs=1e-6
    )
    assert any(e["kind"] == "anchor_step" for e in result.events)

    # Another kernel learned a different document: each document's queries go to its kernel.
    forge = distinctive_document(3, *FORGE, n=400)
    forge_basin = coordizer.text_basin(" ".join(forge))
    anchors = {k: e8.anchor(k) for k in e8.preset_kernels("medium")}
    anchors[kernel] = moved
    anchors[other] = geodesic(anchors[other], forge_basin, cfg.anchor_step)
    router = Router(anchors, text_basin=coordizer.text_basin)
    harbor_hits = np.mean([router.route(q).kernels[0] == kernel for q in held[:30]])
    forge_queries = distinctive_document(4, *FORGE, n=30)
    forge_hits = np.mean([router.route(q).kernels[0] == other for q in forge_queries])
    assert harbor_hits >= 0.9, f"only {harbor_hits:.0%} of the document's queries reached it"
    assert forge_hits >= 0.9, f"only {forge_hits:.0%} of the other document's queries"
