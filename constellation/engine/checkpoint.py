"""Saving and loading trained trunks and adapters (safetensors + a JSON config).

A trunk directory holds `trunk.safetensors` and `trunk.json`; an adapter file pair holds
`adapter.safetensors` and `adapter.json`. A trainer checkpoint (see `trainer.py`) can also be
turned back into a trunk or an adapter with `trunk_from_checkpoint` / `adapter_from_checkpoint`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import LoRAConfig, TrunkConfig
from .model import Adapter, Trunk


def save_trunk(trunk: Trunk, directory: str | Path) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in trunk.state_dict().items()}
    save_file(state, str(d / "trunk.safetensors"))
    (d / "trunk.json").write_text(json.dumps(trunk.cfg.to_dict(), indent=2))
    return d


def load_trunk(
    directory: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Trunk:
    d = Path(directory)
    cfg = TrunkConfig(**json.loads((d / "trunk.json").read_text()))
    trunk = Trunk(cfg)
    trunk.load_state_dict(load_file(str(d / "trunk.safetensors")))
    return trunk.to(device=device, dtype=dtype).eval()


def save_adapter(adapter: Adapter, trunk_cfg: TrunkConfig, directory: str | Path) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in adapter.state_dict().items()}
    save_file(state, str(d / "adapter.safetensors"))
    meta = {"lora": asdict(adapter.lora), "trunk": trunk_cfg.to_dict()}
    (d / "adapter.json").write_text(json.dumps(meta, indent=2))
    return d


def load_adapter(directory: str | Path) -> tuple[Adapter, TrunkConfig]:
    d = Path(directory)
    meta = json.loads((d / "adapter.json").read_text())
    lora = meta["lora"]
    lora["targets"] = tuple(lora["targets"])
    cfg = TrunkConfig(**meta["trunk"])
    adapter = Adapter(cfg, LoRAConfig(**lora))
    adapter.load_state_dict(load_file(str(d / "adapter.safetensors")))
    return adapter, cfg


def trunk_from_checkpoint(checkpoint: str | Path) -> Trunk:
    """The trunk of a `pretrain` trainer checkpoint directory (e.g. `latest_checkpoint(dir)`)."""
    p = Path(checkpoint)
    state = json.loads((p / "state.json").read_text())
    if state["mode"] != "pretrain":
        raise ValueError(f"checkpoint: {p} is an {state['mode']} checkpoint, not pretrain")
    trunk = Trunk(TrunkConfig(**state["trunk_config"]))
    trunk.load_state_dict(load_file(str(p / "weights.safetensors")))
    return trunk.eval()


def adapter_from_checkpoint(checkpoint: str | Path, lora: LoRAConfig | None = None) -> Adapter:
    """The adapter of an `adapter` trainer checkpoint directory."""
    p = Path(checkpoint)
    state = json.loads((p / "state.json").read_text())
    if state["mode"] != "adapter":
        raise ValueError(f"checkpoint: {p} is a {state['mode']} checkpoint, not adapter")
    weights = load_file(str(p / "weights.safetensors"))
    rank = next(iter(v for k, v in weights.items() if k.startswith("a."))).shape[1]
    adapter = Adapter(TrunkConfig(**state["trunk_config"]), lora or LoRAConfig(rank=rank))
    adapter.load_state_dict(weights)
    return adapter
