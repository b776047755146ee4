"""Serving the constellation: one loaded model per web process, one continuous-batching scheduler.

The newest coordizer, trunk and kernel adapters under ``settings.MODELS_DIR`` are loaded lazily on
the first request (in a worker thread, never on the event loop) into one engine `Constellation`
and one background `Scheduler` thread. Every request checks the on-disk versions (the published
directories are symbolic links swapped atomically by training) and reloads when a newer trunk,
coordizer or adapter appeared. `keep_alive` decides when an idle model is unloaded.

Async callers get a `streaming.Generation`: tokens handed over by the scheduler thread itself
(``loop.call_soon_threadsafe``, batched), decoded into pieces; a request whose client goes away
is cancelled and its scheduler row freed at the next step.

Routing does no harm (docs/inference.md, "Routing"): every kernel with a published adapter
answers only the queries within its radius (its version's `kernel.json`, else
`QIG_ROUTE_RADIUS`); the engine's `Router` decides, and every route says who answered and why.

This module is the service: loading, keep_alive, admission. What is on disk is
`constellation.published`; the expected failures are `constellation.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from constellation import published, tools
from constellation.catalog import kernel_model_name
from constellation.engine import (
    Constellation,
    Coordizer,
    Request,
    Route,
    Router,
    SamplingOptions,
    Scheduler,
    Ticket,
    as_basin,
    auto_threads,
    e8,
)
from constellation.engine.grammar import Constraint, GrammarError, Grammars
from constellation.errors import BadRequest, Busy, ContextTooLong, Unavailable
from constellation.keep_alive import DEFAULT_KEEP_ALIVE_S, expiry
from constellation.published import bootstrap_progress, fingerprint, has_model
from constellation.streaming import Generation
from qigcenter.dbthreads import usable_connections
from qigcenter.env import env_int

log = logging.getLogger(__name__)


def max_batch() -> int:
    return env_int("QIG_INFER_MAX_BATCH", 8, minimum=1, maximum=256)


def threads() -> int:
    """Intra-op threads of the decode steps and the Φ/κ readings: `QIG_INFER_THREADS`, or with
    0 (the default) `auto_threads()`, (cores − 1) // 2. More threads than free cores make
    PyTorch's OpenMP threads wait on each other: on 2 cores, 2 threads decoded 2.5× slower in
    the server than 1 (docs/inference.md)."""
    return env_int("QIG_INFER_THREADS", 0, minimum=0, maximum=1024) or auto_threads()


def max_queue() -> int:
    """Requests waiting for a row beyond the decoding ones before new ones get 503."""
    return env_int("QIG_INFER_MAX_QUEUE", 64, minimum=0, maximum=100_000)


# ---- routing ---------------------------------------------------------------------------------
def read_meta(index: int) -> dict[str, Any]:
    """Kernel `index`'s published `kernel.json` ({} when it has none or it is unreadable: the
    adapter still serves, with the stored anchor and the default radius)."""
    try:
        meta = published.kernel_meta(index)
    except ValueError:
        log.warning("kernel %s: its kernel.json is not valid JSON", index)
        return {}
    return meta if isinstance(meta, dict) else {}


def route_radius(meta: dict[str, Any]) -> float:
    """The radius calibrated when the adapter was published (`kernel.json`), else
    `QIG_ROUTE_RADIUS` (adapters published before radii existed)."""
    radius = meta.get("radius")
    if isinstance(radius, int | float) and not isinstance(radius, bool) and 0 < radius < math.inf:
        return float(radius)
    if radius is not None:
        log.warning("kernel.json radius %r is not a positive number: using the default", radius)
    return float(settings.ROUTE_RADIUS)


def route_anchor(meta: dict[str, Any], stored: Any) -> Any:
    """The anchor the radius was calibrated around (`kernel.json`'s, published with it in the
    same version directory, so a reload sees the pair a rollback restored, whatever the row's
    state at that moment), else the kernel row's."""
    anchor = meta.get("anchor")
    if anchor is None:
        return stored
    try:
        return as_basin(anchor, "kernel.json anchor")
    except (ValueError, TypeError) as exc:
        log.warning("%s: using the kernel row's anchor", exc)
        return stored


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def route_entries(route: Route) -> list[dict[str, Any]]:
    """A route as the interaction, the done lines and the chat keep it: `{kernel, role,
    distance}` per kernel, the answering one first with `answered_by` (`kernel` | `trunk`),
    `reason`, `radius`, and, when the trunk answered, the `nearest` trained kernel."""
    entries: list[dict[str, Any]] = [
        {"kernel": k, "role": None if k is None else e8.role_of(k).value, "distance": _finite(d)}
        for k, d in zip(route.kernels, route.distances, strict=True)
    ]
    head = entries[0]
    head.update(answered_by=route.answered_by, reason=route.reason, radius=_finite(route.radius))
    if route.answered_by == "trunk" and route.nearest_trained is not None:
        k, d, r = route.nearest_trained
        head["nearest"] = {"kernel": k, "distance": d, "radius": _finite(r)}
    return entries


def answer_room(window: int, num_predict: int) -> int:
    """Tokens a truncated prompt leaves free in a `window`: what was asked for (`num_predict`),
    else a quarter of the window, never more than half of it and at least one."""
    wanted = num_predict if num_predict > 0 else window // 4
    return max(1, min(wanted, window // 2))


def pinned_entry(kernel: int, trained: bool) -> dict[str, Any]:
    """The route of a pinned kernel model (`qig-kernel-<i>-<role>`, a config's ADAPTER)."""
    name = kernel_model_name(kernel).removesuffix(":latest")
    return {
        "kernel": kernel,
        "role": e8.role_of(kernel).value,
        "distance": None,
        "answered_by": "pinned",
        "reason": f"pinned: {name}" + ("" if trained else " (no adapter: the bare trunk)"),
        "radius": None,
    }


# ---- the loaded model ------------------------------------------------------------------------
@dataclass
class Loaded:
    constellation: Constellation
    scheduler: Scheduler
    fingerprint: tuple[str, ...]
    routers: dict[str, Router]
    load_duration_ns: int
    loaded_at: float
    expires_at: float | None = DEFAULT_KEEP_ALIVE_S  # set properly on load
    tickets: set[Ticket] = field(default_factory=set)
    _grammars: Grammars | None = None
    # schedulers over the int8 twin of the trunk (`/api/create`'s quantize), made on first use
    quantized: dict[str, Scheduler] = field(default_factory=dict)
    _variant_lock: threading.Lock = field(default_factory=threading.Lock)

    def scheduler_for(self, quantize: str | None) -> Scheduler:
        """The scheduler that serves a model of this quantization (engine name; None: the
        trunk as loaded). An int8 one shares the trunk's weights and kernel adapters and runs in
        its own thread beside the first (`Constellation.trunk_for`)."""
        if quantize is None:
            return self.scheduler
        with self._variant_lock:
            if quantize not in self.quantized:
                try:  # e.g. a trunk on a GPU: the int8 kernel is CPU-only
                    self.constellation.trunk_for(quantize)
                except ValueError as exc:
                    raise BadRequest(f"this node cannot serve quantized models: {exc}") from None
                sched = self.constellation.scheduler(
                    self.scheduler.max_batch, self.scheduler.threads, quantize
                )
                sched.start()
                self.quantized[quantize] = sched
            return self.quantized[quantize]

    def schedulers(self) -> list[Scheduler]:
        """The trunk's scheduler and those over its int8 twins."""
        return [self.scheduler, *self.quantized.values()]

    def stop(self) -> None:
        """Stop every scheduler of this model."""
        for sched in self.schedulers():
            sched.stop()

    def constraint(self, schema: dict[str, Any] | str) -> Constraint:
        """A request's grammar for a JSON `schema`, or a lark grammar (a text: `tools`); the
        vocabulary is read for llguidance once per model."""
        if self._grammars is None:
            coord, cfg = self.coordizer, self.constellation.trunk.cfg
            self._grammars = Grammars(coord.tokenizer, cfg.vocab_size, coord.eot_id)
        try:
            if isinstance(schema, str):  # a tool call's JSON comes after its marker
                return self._grammars.constraint(schema, tools.MARK)
            return self._grammars.constraint(schema)
        except GrammarError as exc:
            what = (
                "tools: a tool's parameters"
                if isinstance(schema, str)
                else "format: the JSON schema"
            )
            raise BadRequest(f"{what} cannot be enforced: {exc}") from None

    @property
    def coordizer(self) -> Coordizer:
        return self.constellation.coordizer

    @property
    def context_length(self) -> int:
        return int(self.constellation.trunk.cfg.max_seq_len)

    @property
    def size_bytes(self) -> int:
        trunk = self.constellation.trunk
        return int(sum(p.numel() * p.element_size() for p in trunk.parameters()))


class InferenceService:
    """The process-wide serving state (see `service()`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._reaper: threading.Thread | None = None

    # ---- loading -------------------------------------------------------------------------
    def loaded(self) -> Loaded | None:
        return self._loaded

    async def _aensure_loaded(self, keep_alive: float | None) -> tuple[Loaded, int]:
        """`_ensure_loaded` for the event loop: when the loaded model is current (a few
        `realpath`s tell), no thread hop; loading and reloading happen in a worker thread."""
        current = self._loaded
        if current is not None and has_model() and current.fingerprint == fingerprint():
            return current, 0
        return await asyncio.to_thread(self._ensure_loaded, keep_alive)

    def _ensure_loaded(self, keep_alive: float | None) -> tuple[Loaded, int]:
        """The current model, loading or reloading it when needed; returns it and the load time
        in ns (0 when it was already loaded)."""
        usable_connections()  # a thread of asyncio.to_thread: no request renews its connection
        if not has_model():
            raise Unavailable(f"no trained model yet: {bootstrap_progress()}")
        with self._lock:
            current = fingerprint()
            old = self._loaded
            if old is not None and old.fingerprint == current:
                return old, 0
            began = time.perf_counter_ns()
            loaded = self._load(current)
            loaded.load_duration_ns = time.perf_counter_ns() - began
            loaded.expires_at = expiry(keep_alive)
            self._loaded = loaded
            self._start_reaper()
        if old is not None:
            _retire(old)
        return loaded, loaded.load_duration_ns

    def _load(self, current: tuple[str, ...]) -> Loaded:
        import torch

        from constellation.engine import default_inference_dtype

        from .models import Kernel

        coordizer = published.load_coordizer()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = default_inference_dtype(device)  # (`catalog.served_level` says it)
        trunk = published.load_trunk(dtype=dtype, device=device)
        adapters = published.kernel_adapter_dirs()
        metas = {index: read_meta(index) for index in adapters}
        rows = Kernel.objects.filter(index__in=list(adapters)).only("index", "anchor")
        stored = {k.index: k.anchor for k in rows}
        anchors: dict[int, Any] = {}
        for index in adapters:
            anchor = route_anchor(metas[index], stored.get(index))
            if anchor is not None:  # else its E8 anchor
                anchors[index] = anchor
        constellation = Constellation(
            trunk, coordizer, size="minimal", max_adapters=max(16, len(adapters)), anchors=anchors
        )
        for index in sorted(adapters):
            adapter, _ = published.load_adapter(index)
            constellation.load_adapter(index, adapter, radius=route_radius(metas[index]))
        routers = {"latest": constellation.router}
        for size in e8.PRESETS:
            routers[size] = constellation.router_over(e8.preset_kernels(size))
        if settings.FEDERATION == "edge":  # an edge answers with its size's kernels only
            routers["latest"] = routers[settings.FEDERATION_SIZE]
        scheduler = constellation.scheduler(max_batch=max_batch(), threads=threads())
        scheduler.start()
        return Loaded(constellation, scheduler, current, routers, 0, time.time())

    def unload(self) -> bool:
        with self._lock:
            old, self._loaded = self._loaded, None
        if old is None:
            return False
        for ticket in list(old.tickets):
            ticket.cancel()
        old.stop()
        for sched in old.schedulers():
            sched.step()  # finishes the cancelled tickets: their streams end with an error
        return True

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(
                target=self._reap, name="inference-keep-alive", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(0.5)
            loaded = self._loaded
            if (
                loaded is not None
                and not loaded.tickets
                and loaded.expires_at is not None
                and time.time() >= loaded.expires_at
            ):
                with self._lock:
                    if self._loaded is loaded and not loaded.tickets:
                        self._loaded = None
                    else:
                        continue
                loaded.stop()

    async def load(self, keep_alive: float | None) -> str:
        """An empty request: load (or, with keep_alive 0, unload). Returns the done_reason."""
        if keep_alive == 0:
            await asyncio.to_thread(self.unload)
            return "unload"
        loaded, _ = await asyncio.to_thread(self._ensure_loaded, keep_alive)
        loaded.expires_at = expiry(keep_alive)
        return "load"

    # ---- answering -----------------------------------------------------------------------
    async def start(
        self,
        prompt: str,
        options: SamplingOptions,
        keep_alive: float | None,
        kernel: int | None = None,
        preset: str = "latest",
        num_ctx: int | None = None,
        context: list[int] | None = None,
        truncate: bool = False,
        schema: dict[str, Any] | str | None = None,
        quantize: str | None = None,
    ) -> Generation:
        """Admit one request; errors (no model, too long, busy) are raised before any output.
        A prompt that does not fit the context window is `ContextTooLong`, or with `truncate`
        (Ollama's default) loses its oldest tokens: its end is kept, with room to answer. With
        `schema`, the reply is decoded under that JSON schema's grammar (400 if it cannot be).
        `quantize` ("int8"): a model created with `quantize` is answered by the int8 trunk."""
        started = time.perf_counter()
        loaded, load_ns = await self._aensure_loaded(keep_alive)
        ids = list(context or []) + loaded.coordizer.encode(prompt)
        ids = ids or [loaded.coordizer.eot_id]
        if max(ids) >= loaded.coordizer.vocab_size or min(ids) < 0:
            raise BadRequest("context: token id outside the vocabulary")
        window = min(num_ctx or loaded.context_length, loaded.context_length)
        if len(ids) >= window:
            if not truncate or window < 2:  # a window of 1 holds no prompt and an answer
                raise ContextTooLong(len(ids), window)
            ids = ids[len(ids) - (window - answer_room(window, options.num_predict)) :]
        route: list[dict[str, Any]]
        if kernel is not None:
            route = [pinned_entry(kernel, kernel in loaded.constellation.radii)]
        else:
            found = loaded.routers[preset].route(prompt, 1)
            route = route_entries(found)
            kernel = found.kernels[0]  # None: the bare trunk
        if len(loaded.tickets) >= loaded.scheduler.max_batch + max_queue():
            raise Busy()
        # A budget that fits the context: the scheduler stops a row when its cache is full.
        grammar = None if schema is None else await asyncio.to_thread(loaded.constraint, schema)
        scheduler = loaded.quantized.get(quantize) if quantize else loaded.scheduler
        if scheduler is None:  # the first request for a quantised model quantises the trunk
            scheduler = await asyncio.to_thread(loaded.scheduler_for, quantize)
        ticket = scheduler.submit(Request(ids, [(kernel, 1.0)], options, grammar))
        loaded.tickets.add(ticket)
        return Generation(
            self, loaded, ticket, options, len(ids), started, load_ns, keep_alive, route
        )

    def finished(self, loaded: Loaded, ticket: Ticket, keep_alive: float | None) -> None:
        loaded.tickets.discard(ticket)
        loaded.expires_at = expiry(keep_alive)
        if keep_alive == 0 and not loaded.tickets:
            threading.Thread(target=self.unload, daemon=True).start()

    def ps(self) -> Loaded | None:
        return self._loaded

    async def embed(
        self, texts: list[str], keep_alive: float | None
    ) -> tuple[list[list[float]], int, int]:
        """Unit vectors √basin of each text: their dot product is cos(d_FR/2), the Fisher–Rao
        geometry the router uses. Returns (embeddings, tokens, load ns)."""
        loaded, load_ns = await asyncio.to_thread(self._ensure_loaded, keep_alive)
        loaded.expires_at = expiry(keep_alive)

        def compute() -> tuple[list[list[float]], int]:
            import numpy as np

            coord = loaded.coordizer
            tokens = sum(len(coord.encode(t)) for t in texts)
            return [np.sqrt(coord.text_basin(t)).astype(float).tolist() for t in texts], tokens

        vectors, tokens = await asyncio.to_thread(compute)
        return vectors, tokens, load_ns


def _retire(old: Loaded) -> None:
    """Stop a replaced model's scheduler once its running requests are done."""

    def wait_then_stop() -> None:
        while old.tickets:
            time.sleep(0.1)
        old.stop()

    threading.Thread(target=wait_then_stop, name="inference-retire", daemon=True).start()


_service = InferenceService()


def service() -> InferenceService:
    return _service
