"""The constellation engine: pure PyTorch/numpy, imports no Django (docs/design.md §2–6).

One module per concept:
    geometry     Fisher–Rao distance, geodesics, log/exp maps, Karcher mean on the 64-simplex
    e8           the 240 E8 roots, roles, anchors and size presets
    coordizer    byte-level BPE + per-token basin coordinates, text basins
    bulk_encode  fast exact tokenisation of large texts (`Coordizer.encode_large`)
    corpus       the bootstrap corpus from installed packages' docstrings and docs
    config       TrunkConfig (presets `tiny`, `100m`) and LoRAConfig
    model        the trunk (RMSNorm, RoPE, SwiGLU, SDPA, tied embeddings)
    lora         kernel adapters, the LoRA bank and the batched per-row LoRA route
    kv_cache     the preallocated KV cache and the ragged caches of continuous batching
    packing      oneDNN-prepacked weights for fast CPU decoding
    quant        int8 weight-only copies of the trunk's matrices (`Trunk.quantized`)
    sampling     Ollama's sampling options
    generation   batched multi-kernel decoding, the streaming reply iterator, stop strings
    scheduler    continuous batching: requests join and leave the decode batch between steps
    metrics      Φ and κ of final hidden states, regime and phase
    router       query basin → nearest kernels, weights for a logit mixture
    optim        DiagonalFisher (and AdamW)
    data         training examples → token stream → deterministic batches
    callbacks    telemetry, the collapse guard and the recovery ladder
    trainer      one trainer for `pretrain` and `adapter`, checkpoints with exact resume
    checkpoint   save / load trunks and adapters
    constellation  the run-time facade: trunk + coordizer + bank + anchors + router

Every name below but ``e8`` is loaded on first use (PEP 562): most of them import PyTorch, and
Django imports ``constellation.engine.e8`` at start-up for the kernel roles.
"""

# The imports under TYPE_CHECKING are for type checkers only; ``_EXPORTS`` re-exports them.
# ruff: noqa: F401

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import e8

if TYPE_CHECKING:
    from .callbacks import (
        Action,
        Callback,
        GuardConfig,
        StepInfo,
        TelemetryCallback,
        default_guards,
        step_metrics,
    )
    from .checkpoint import (
        adapter_from_checkpoint,
        adapter_from_file,
        load_adapter,
        load_trunk,
        save_adapter,
        save_trunk,
        trunk_from_checkpoint,
    )
    from .config import LoRAConfig, TrunkConfig, trunk_preset
    from .constellation import Constellation, text_basin
    from .coordizer import Coordizer, CoordizerConfig
    from .corpus import CorpusConfig, build_corpus
    from .data import TokenStream, read_jsonl
    from .device import default_device, default_inference_dtype, dtype_level
    from .generation import DecodeStats, Request, StreamChunk, generate, stream_reply
    from .geometry import (
        as_basin,
        exp_map,
        fisher_rao,
        geodesic,
        karcher_mean,
        log_map,
        pairwise_fisher_rao,
    )
    from .metrics import MetricsConfig, Reading, measure
    from .model import Adapter, KVCache, LoRABank, LoRARoute, Trunk
    from .optim import DiagonalFisher
    from .router import Route, Router, RouterConfig
    from .sampling import SamplingOptions
    from .scheduler import Scheduler, Ticket, auto_threads, use_threads
    from .trainer import (
        AnchorUpdate,
        TrainConfig,
        Trainer,
        TrainResult,
        latest_checkpoint,
        train_kernels,
    )

# submodule → the names it exports here.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "callbacks": (
        "Action",
        "Callback",
        "GuardConfig",
        "StepInfo",
        "TelemetryCallback",
        "default_guards",
        "step_metrics",
    ),
    "checkpoint": (
        "adapter_from_checkpoint",
        "adapter_from_file",
        "load_adapter",
        "load_trunk",
        "save_adapter",
        "save_trunk",
        "trunk_from_checkpoint",
    ),
    "config": ("LoRAConfig", "TrunkConfig", "trunk_preset"),
    "constellation": ("Constellation", "text_basin"),
    "coordizer": ("Coordizer", "CoordizerConfig"),
    "corpus": ("CorpusConfig", "build_corpus"),
    "data": ("TokenStream", "read_jsonl"),
    "device": ("default_device", "default_inference_dtype", "dtype_level"),
    "generation": ("DecodeStats", "Request", "StreamChunk", "generate", "stream_reply"),
    "geometry": (
        "as_basin",
        "exp_map",
        "fisher_rao",
        "geodesic",
        "karcher_mean",
        "log_map",
        "pairwise_fisher_rao",
    ),
    "metrics": ("MetricsConfig", "Reading", "measure"),
    "model": ("Adapter", "KVCache", "LoRABank", "LoRARoute", "Trunk"),
    "optim": ("DiagonalFisher",),
    "router": ("Route", "Router", "RouterConfig"),
    "sampling": ("SamplingOptions",),
    "scheduler": ("Scheduler", "Ticket", "auto_threads", "use_threads"),
    "trainer": (
        "AnchorUpdate",
        "TrainConfig",
        "Trainer",
        "TrainResult",
        "latest_checkpoint",
        "train_kernels",
    ),
}
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["e8", *sorted(_SOURCE)]


def __getattr__(name: str) -> Any:
    module = _SOURCE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, an ordinary module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
