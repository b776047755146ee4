"""The constellation engine: pure PyTorch/numpy, imports no Django (DESIGN.md §2–6).

One module per concept:
    geometry     Fisher–Rao distance, geodesics, log/exp maps, Karcher mean on the 64-simplex
    e8           the 240 E8 roots, roles, anchors and size presets
    coordizer    byte-level BPE + per-token basin coordinates, text basins
    corpus       the bootstrap corpus from installed packages' docstrings and docs
    config       TrunkConfig (presets `tiny`, `100m`) and LoRAConfig
    model        the trunk (RMSNorm, RoPE, SwiGLU, SDPA, tied embeddings)
    lora         kernel adapters, the LoRA bank and the batched per-row LoRA route
    kv_cache     the preallocated KV cache and the ragged caches of continuous batching
    packing      oneDNN-prepacked weights for fast CPU decoding
    sampling     Ollama's sampling options
    generation   batched multi-kernel decoding and the streaming reply iterator
    scheduler    continuous batching: requests join and leave the decode batch between steps
    metrics      Φ and κ of final hidden states, regime and phase
    router       query basin → nearest kernels, weights for a logit mixture
    optim        DiagonalFisher (and AdamW)
    data         training examples → token stream → deterministic batches
    callbacks    telemetry, the collapse guard and the recovery ladder
    trainer      one trainer for `pretrain` and `adapter`, checkpoints with exact resume
    checkpoint   save / load trunks and adapters
    constellation  the run-time facade: trunk + coordizer + bank + anchors + router
"""

from . import e8
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
from .device import default_device, default_inference_dtype
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

__all__ = [
    "Action",
    "Adapter",
    "AnchorUpdate",
    "Callback",
    "Constellation",
    "Coordizer",
    "CoordizerConfig",
    "CorpusConfig",
    "DecodeStats",
    "DiagonalFisher",
    "GuardConfig",
    "KVCache",
    "LoRABank",
    "LoRAConfig",
    "LoRARoute",
    "MetricsConfig",
    "Reading",
    "Request",
    "Route",
    "Router",
    "RouterConfig",
    "SamplingOptions",
    "Scheduler",
    "StepInfo",
    "StreamChunk",
    "TelemetryCallback",
    "Ticket",
    "TokenStream",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "Trunk",
    "TrunkConfig",
    "adapter_from_checkpoint",
    "as_basin",
    "auto_threads",
    "build_corpus",
    "default_device",
    "default_guards",
    "default_inference_dtype",
    "e8",
    "exp_map",
    "fisher_rao",
    "generate",
    "geodesic",
    "karcher_mean",
    "latest_checkpoint",
    "load_adapter",
    "load_trunk",
    "log_map",
    "measure",
    "pairwise_fisher_rao",
    "read_jsonl",
    "save_adapter",
    "save_trunk",
    "step_metrics",
    "stream_reply",
    "text_basin",
    "train_kernels",
    "trunk_from_checkpoint",
    "trunk_preset",
    "use_threads",
]
