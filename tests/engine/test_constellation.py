"""The run-time facade the Django side uses: route, reply with Ollama options, measure."""

import pytest
import torch

from constellation.engine import (
    Constellation,
    SamplingOptions,
    Trunk,
    TrunkConfig,
    e8,
)
from constellation.engine.model import Adapter


@pytest.fixture
def constellation(coordizer) -> Constellation:
    torch.manual_seed(0)
    cfg = TrunkConfig(
        vocab_size=coordizer.vocab_size, hidden=32, n_layers=2, n_heads=4, mlp_hidden=64
    )
    return Constellation(Trunk(cfg), coordizer, size="minimal")


def test_it_starts_with_the_preset_kernels_and_routes_text(constellation):
    assert constellation.active_kernels == sorted(e8.preset_kernels("minimal"))
    route = constellation.route("Return the absolute value of a number.", k=2)
    assert len(route.kernels) == 2
    assert set(route.kernels) <= set(constellation.active_kernels)
    moved = constellation.step_anchor(
        route.kernels[1],
        constellation.coordizer.text_basin("Return the absolute value of a number."),
        1.0,
    )
    assert constellation.route("Return the absolute value of a number.").kernels == [
        route.kernels[1]
    ]
    assert moved.sum() == pytest.approx(1.0)


def test_a_reply_streams_with_ollama_options_and_reports_phi_kappa(constellation):
    options = {"temperature": 0.7, "seed": 42, "num_predict": 16, "top_k": 20}
    chunks = list(constellation.reply("def add(a, b):", options))
    again = list(constellation.reply("def add(a, b):", options))
    assert "".join(c.text for c in chunks) == "".join(c.text for c in again)
    final = chunks[-1]
    assert final.done
    assert final.done_reason in ("length", "stop")
    reading = constellation.measure(final)
    assert reading is not None
    assert 0.0 <= reading.phi < 1.0
    assert reading.regime in ("linear", "geometric", "breakdown")


def test_a_standby_kernel_answers_with_the_bare_trunk(constellation):
    heart = e8.kernel_for_role("HEART")
    opts = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=8)
    bare = "".join(c.text for c in constellation.reply("import os", opts, kernel=None, top_k=1))
    standby = "".join(c.text for c in constellation.reply("import os", opts, kernel=heart))
    assert standby == bare
    adapter = Adapter(constellation.trunk.cfg, constellation.lora, seed=1)
    with torch.no_grad():
        for p in adapter.b.values():
            p.normal_(0, 0.5)
    constellation.load_adapter(heart, adapter)
    active = "".join(c.text for c in constellation.reply("import os", opts, kernel=heart))
    assert active != bare
