"""The constellation at run time: one trunk, a coordizer, a bank of kernel adapters, anchors,
routing radii and a router — what the Django side holds per process to answer queries.

A kernel with an adapter is *trained*: it answers only queries within its routing radius (set
with the adapter; `math.inf` when none is given); the others are standby (see `router`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from . import e8
from .config import LoRAConfig
from .coordizer import Coordizer
from .generation import StreamChunk, stream_reply
from .geometry import Array, as_basin, geodesic
from .metrics import MetricsConfig, Reading, measure
from .model import Adapter, LoRABank, Trunk
from .router import Route, Router, RouterConfig
from .sampling import SamplingOptions
from .scheduler import Scheduler


class Constellation:
    def __init__(
        self,
        trunk: Trunk,
        coordizer: Coordizer,
        size: str = "minimal",
        lora: LoRAConfig | None = None,
        max_adapters: int = 16,
        anchors: Mapping[int, npt.ArrayLike] | None = None,
        router_config: RouterConfig | None = None,
    ) -> None:
        if trunk.cfg.vocab_size < coordizer.vocab_size:
            raise ValueError(
                f"trunk vocab {trunk.cfg.vocab_size} < coordizer vocab {coordizer.vocab_size}"
            )
        self.trunk, self.coordizer = trunk.eval().optimize_for_inference(), coordizer
        self.lora = lora or LoRAConfig()
        self.bank = LoRABank(trunk.cfg, self.lora, n_slots=max_adapters + 1).to(
            device=trunk.device, dtype=trunk.dtype
        )
        active = e8.preset_kernels(size)
        self.anchors: dict[int, Array] = {k: e8.anchor(k) for k in active}
        for k, a in (anchors or {}).items():
            self.anchors[int(k)] = as_basin(a, f"anchors[{k}]")
        self.radii: dict[int, float] = {}  # the trained kernels' routing radii
        self.router_config = router_config or RouterConfig()
        self._router: Router | None = None
        self._quantized: dict[str, Trunk] = {}  # `trunk_for`: int8 twins of the trunk

    # ---- kernels ---------------------------------------------------------------------------
    @property
    def active_kernels(self) -> list[int]:
        return sorted(self.anchors)

    def activate(self, kernel: int, anchor: npt.ArrayLike | None = None) -> None:
        self.anchors[kernel] = (
            as_basin(anchor, "anchor") if anchor is not None else e8.anchor(kernel)
        )
        self._router = None

    def load_adapter(self, kernel: int, adapter: Adapter, radius: float = math.inf) -> None:
        """Make `kernel` active with this adapter (it was standby: bare trunk), answering the
        queries within `radius` of its anchor (Fisher–Rao, radians)."""
        self.bank.load(kernel, adapter)
        if kernel not in self.anchors:
            self.activate(kernel)
        self.set_radius(kernel, radius)

    def set_radius(self, kernel: int, radius: float) -> None:
        if not radius > 0:
            raise ValueError(f"radius: must be positive, got {radius}")
        self.radii[kernel] = float(radius)
        self._router = None

    def set_anchor(self, kernel: int, basin: npt.ArrayLike) -> None:
        self.anchors[kernel] = as_basin(basin, "anchor")
        self._router = None

    def step_anchor(self, kernel: int, target: npt.ArrayLike, t: float) -> Array:
        """Move a kernel's anchor a fraction t along the geodesic toward `target` (e.g. a
        federation merge result); returns the new anchor."""
        new = geodesic(self.anchors[kernel], target, t)
        self.set_anchor(kernel, new)
        return new

    # ---- routing and answering -------------------------------------------------------------
    @property
    def router(self) -> Router:
        """Over the active kernels: the size preset's and every trained one."""
        if self._router is None:
            self._router = self.router_over(self.anchors)
        return self._router

    def router_over(self, kernels: Iterable[int]) -> Router:
        """A router over these kernels only (e.g. a size preset's), each at its current anchor
        (its E8 anchor if it is not active), the trained ones with their radii."""
        chosen = sorted(set(kernels))
        anchors = {k: self.anchors.get(k, e8.anchor(k)) for k in chosen}
        radii = {k: self.radii[k] for k in chosen if k in self.radii}
        return Router(anchors, self.router_config, self.coordizer.text_basin, radii)

    def route(self, text: str, k: int | None = None) -> Route:
        return self.router.route(text, k)

    def reply(
        self,
        prompt: str,
        options: SamplingOptions | Mapping[str, Any] | None = None,
        kernel: int | None = None,
        top_k: int = 1,
    ) -> Iterator[StreamChunk]:
        """Stream a reply. `kernel=None` routes the prompt (top-1, or a top-k logit mixture)."""
        opts = (
            options
            if isinstance(options, SamplingOptions)
            else SamplingOptions.from_ollama(options)
        )
        if kernel is not None:
            mixture: list[tuple[int | None, float]] = [(kernel, 1.0)]
        else:
            mixture = self.route(prompt, top_k).as_mixture()
        ids = self.coordizer.encode(prompt) or [self.coordizer.eot_id]
        return stream_reply(
            self.trunk, self.coordizer.decode, ids, opts, mixture, self.bank, self.coordizer.eot_id
        )

    def trunk_for(self, quantize: str | None) -> Trunk:
        """The trunk to serve with: this one, or (`"int8"`) its int8 twin (`Trunk.quantized`,
        made on first use; it shares the weights, and the bank's adapters serve it unchanged)."""
        if quantize is None:
            return self.trunk
        if quantize not in self._quantized:
            self._quantized[quantize] = self.trunk.quantized(quantize)
        return self._quantized[quantize]

    def scheduler(
        self, max_batch: int = 8, threads: int = 0, quantize: str | None = None
    ) -> Scheduler:
        """A continuous-batching scheduler over this trunk (or its `quantize`d twin) and bank
        (call `.start()`); submit `Request(self.coordizer.encode(text), [(kernel, 1.0)],
        options)` and iterate the ticket. `threads`: its decode steps' intra-op threads (0:
        PyTorch's setting)."""
        return Scheduler(
            self.trunk_for(quantize),
            self.bank,
            self.coordizer.eot_id,
            max_batch,
            keep_hidden=True,
            threads=threads,
        )

    def measure(self, chunk: StreamChunk, config: MetricsConfig | None = None) -> Reading | None:
        """Φ/κ of the hidden states a finished reply went through (None if too few tokens)."""
        if chunk.stats is None or not chunk.stats.hidden:
            return None
        import torch

        hidden = torch.cat(chunk.stats.hidden, dim=0)  # (N, C)
        return measure(hidden, config) if hidden.shape[0] >= 2 else None


def text_basin(coordizer: Coordizer, texts: list[str]) -> np.ndarray:
    """The basin of a body of text (e.g. an adapter job's training data)."""
    ids: list[int] = []
    for t in texts:
        ids += coordizer.encode(t)
    return coordizer.basin_of_ids(ids)
