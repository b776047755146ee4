"""Saving and loading trained trunks and adapters (safetensors + a JSON config).

A trunk directory holds `trunk.safetensors` and `trunk.json`; an adapter file pair holds
`adapter.safetensors` and `adapter.json`. A trainer checkpoint (see `trainer.py`) can also be
turned back into a trunk or an adapter with `trunk_from_checkpoint` / `adapter_from_checkpoint`.
`adapter_from_file` reads an adapter brought from elsewhere (one safetensors file, no JSON) and
checks it against the trunk it is to run on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import LoRAConfig, TrunkConfig
from .lora import lora_shapes
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


# An adapter's tensors as `Adapter.state_dict()` names them: a.<layer>_<target> (in, r) and
# b.<layer>_<target> (r, out).
ADAPTER_TENSOR = re.compile(r"^([ab])\.(\d+)_(qkv|o|gate_up|down)$")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def adapter_from_file(path: str | Path, trunk_cfg: TrunkConfig) -> Adapter:
    """An adapter in this engine's layout read from one safetensors file, checked against the
    trunk it is to run on: a LoRA pair (`a.<layer>_<target>` (in, r), `b.<layer>_<target>`
    (r, out)) for the same targets in every one of the trunk's layers, one rank, float tensors,
    every value finite. Its alpha is the header's `lora_alpha` metadata (else LoRAConfig's
    default). Raises ValueError saying what does not fit."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ValueError(f"not a safetensors file ({exc})") from None
    targets: dict[int, set[str]] = {}
    for name in tensors:
        match = ADAPTER_TENSOR.match(name)
        if match is None:
            raise ValueError(
                f"tensor {name!r} is not a LoRA tensor of this engine "
                "(expected a.<layer>_<target> and b.<layer>_<target>, target one of "
                "qkv, o, gate_up, down)"
            )
        targets.setdefault(int(match.group(2)), set()).add(match.group(3))
    layers = list(range(trunk_cfg.n_layers))
    if sorted(targets) != layers:
        raise ValueError(
            f"it has LoRA tensors for layers {sorted(targets)}; this node's trunk has "
            f"{trunk_cfg.n_layers} layers (0 to {trunk_cfg.n_layers - 1}), each needs them"
        )
    chosen = targets[0]
    if any(found != chosen for found in targets.values()):
        raise ValueError("its layers adapt different projections: each must adapt the same ones")
    order = [t for t in LoRAConfig().targets if t in chosen]
    first = tensors.get(f"a.0_{order[0]}")
    rank = int(first.shape[-1]) if first is not None and first.dim() == 2 else 0
    shapes = lora_shapes(trunk_cfg)
    for layer in layers:
        for target in order:
            fin, fout = shapes[target]
            for side, shape in (("a", (fin, rank)), ("b", (rank, fout))):
                name = f"{side}.{layer}_{target}"
                tensor = tensors.get(name)
                if tensor is None:
                    raise ValueError(f"tensor {name!r} is missing (each A needs its B)")
                if tuple(tensor.shape) != shape or rank < 1:
                    raise ValueError(
                        f"tensor {name!r} has shape {tuple(tensor.shape)}; this node's trunk "
                        f"needs {shape} (hidden {trunk_cfg.hidden}, mlp {trunk_cfg.mlp_hidden}"
                        f", rank {rank} read from a.0_{order[0]})"
                    )
                if tensor.dtype not in FLOAT_DTYPES:
                    raise ValueError(f"tensor {name!r} is {tensor.dtype}: expected floats")
                if not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"tensor {name!r} holds non-finite values (NaN or inf)")
    lora = LoRAConfig(rank=rank, alpha=_alpha(metadata), targets=tuple(order))
    adapter = Adapter(trunk_cfg, lora)
    adapter.load_state_dict({name: t.to(torch.float32) for name, t in tensors.items()})
    return adapter


def _alpha(metadata: dict[str, str]) -> float:
    raw = metadata.get("lora_alpha")
    if raw is None:
        return LoRAConfig().alpha
    try:
        alpha = float(raw)
    except ValueError:
        alpha = math.nan
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"metadata lora_alpha {raw[:40]!r}: expected a positive number")
    return alpha
