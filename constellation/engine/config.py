"""Config dataclasses of the trunk and its LoRA kernels, and size presets (docs/design.md §4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class TrunkConfig:
    vocab_size: int = 8000
    hidden: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden: int = 384  # SwiGLU intermediate width
    max_seq_len: int = 256
    basin_dim: int = 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self) -> None:
        assert self.hidden % self.n_heads == 0, "hidden must be divisible by n_heads"
        assert (self.hidden // self.n_heads) % 2 == 0, "head dim must be even for RoPE"
        assert self.vocab_size > 0
        assert self.n_layers > 0
        assert self.max_seq_len > 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_vocab(self, vocab_size: int) -> TrunkConfig:
        return replace(self, vocab_size=vocab_size)

    def serves(self, adapter_trunk: TrunkConfig) -> bool:
        """Whether a trunk with this config runs an adapter trained for `adapter_trunk`.

        LoRA touches only the block projections, never the embedding, and vocabulary expansion
        (`Trunk.grow_vocab`) appends rows without changing any other weight or any old token's
        logits: so an adapter still fits a trunk whose vocabulary grew since it was trained.
        Every other field must match (another shape is another trunk)."""
        return (
            self.vocab_size >= adapter_trunk.vocab_size
            and replace(adapter_trunk, vocab_size=self.vocab_size) == self
        )


# `100m` is the name of the product preset; with tied embeddings it has about 23M parameters.
# `tiny` serves 1024 positions though the bootstrap trains it on 128-token windows: RoPE has no
# position weights, and the held-out loss at positions 128–1024 is within 0.1 nat of 0–128
# (`bench.context`, docs/inference.md "How long a context"); the cost is KV-cache memory only.
PRESETS: dict[str, TrunkConfig] = {
    "tiny": TrunkConfig(max_seq_len=1024),
    "100m": TrunkConfig(
        vocab_size=32000, hidden=384, n_layers=8, n_heads=8, mlp_hidden=640, max_seq_len=512
    ),
}


def trunk_preset(name: str, **overrides: Any) -> TrunkConfig:
    """A preset's config, with optional field overrides (e.g. vocab_size from the coordizer)."""
    if name not in PRESETS:
        raise ValueError(f"preset: must be one of {sorted(PRESETS)}, got {name!r}")
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    # LoRA on the fused attention input projection (q|k|v), the attention output, the fused
    # SwiGLU input projection (gate|up) and the MLP output.
    targets: tuple[str, ...] = field(default=("qkv", "o", "gate_up", "down"))
    init_std: float = 0.02

    def __post_init__(self) -> None:
        assert self.rank > 0, "LoRA rank must be positive"
        bad = set(self.targets) - {"qkv", "o", "gate_up", "down"}
        assert not bad, f"unknown LoRA targets {bad}"

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
