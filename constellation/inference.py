"""Serving the constellation: one loaded model per web process, one continuous-batching scheduler.

The newest coordizer, trunk and kernel adapters under ``settings.MODELS_DIR`` are loaded lazily on
the first request (in a worker thread, never on the event loop) into one engine `Constellation`
and one background `Scheduler` thread. Every request checks the on-disk versions (the published
directories are symbolic links swapped atomically by training) and reloads when a newer trunk,
coordizer or adapter appeared. `keep_alive` decides when an idle model is unloaded.

Async callers get tokens through an asyncio queue fed from a small pump thread per request with
``loop.call_soon_threadsafe``; a request whose client goes away is cancelled and its scheduler row
freed at the next step.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from constellation.engine import (
    Constellation,
    Coordizer,
    Request,
    Router,
    SamplingOptions,
    Scheduler,
    Ticket,
    e8,
    load_adapter,
    load_trunk,
    measure,
)
from qigcenter.env import env_int

DEFAULT_KEEP_ALIVE_S = 300.0
FOREVER = None  # an expiry of None: never unloaded


class InferenceError(Exception):
    """An expected failure answering a request; `status` is the HTTP status clients get."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(InferenceError):
    status = 400


class ModelNotFound(InferenceError):
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")


class Unavailable(InferenceError):
    status = 503


class Busy(Unavailable):
    def __init__(self) -> None:
        super().__init__("server busy, please try again.  maximum pending requests exceeded")


def max_batch() -> int:
    return env_int("QIG_INFER_MAX_BATCH", 8, minimum=1, maximum=256)


def max_queue() -> int:
    """Requests waiting for a row beyond the decoding ones before new ones get 503."""
    return env_int("QIG_INFER_MAX_QUEUE", 64, minimum=0, maximum=100_000)


# ---- what is on disk -------------------------------------------------------------------------
def models_dir() -> Path:
    return Path(settings.MODELS_DIR)


def kernel_adapter_dirs() -> dict[int, Path]:
    root = models_dir() / "kernels"
    if not root.is_dir():
        return {}
    found = {}
    for entry in root.iterdir():
        if entry.name.isdigit() and (entry / "adapter.json").is_file():
            found[int(entry.name)] = entry
    return found


def fingerprint() -> tuple[str, ...]:
    """What is published now: changes whenever training swaps in a new version."""
    parts = [os.path.realpath(models_dir() / "coordizer"), os.path.realpath(models_dir() / "trunk")]
    parts += [f"{k}={os.path.realpath(p)}" for k, p in sorted(kernel_adapter_dirs().items())]
    return tuple(parts)


def has_model() -> bool:
    return (models_dir() / "trunk" / "trunk.json").is_file() and (
        models_dir() / "coordizer" / "tokenizer.json"
    ).is_file()


def safetensors_summary(path: Path) -> tuple[int, str]:
    """(number of parameters, dtype) read from a safetensors header, without loading it."""
    with path.open("rb") as handle:
        (length,) = __import__("struct").unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    count, dtypes = 0, set()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= dim
        count += n
        dtypes.add(info["dtype"])
    return count, "/".join(sorted(dtypes))


@dataclass
class ModelFiles:
    """The published model as clients see it in /api/tags and /api/show."""

    parameters: int
    dtype: str  # F32 | BF16
    size: int  # bytes on disk
    modified: float  # epoch seconds
    digest: str
    context_length: int
    adapters: list[int]


def model_files() -> ModelFiles | None:
    if not has_model():
        return None
    trunk = models_dir() / "trunk"
    count, dtype = safetensors_summary(trunk / "trunk.safetensors")
    size = (trunk / "trunk.safetensors").stat().st_size
    modified = (trunk / "trunk.safetensors").stat().st_mtime
    adapters = kernel_adapter_dirs()
    for directory in adapters.values():
        n, _ = safetensors_summary(directory / "adapter.safetensors")
        count += n
        size += (directory / "adapter.safetensors").stat().st_size
        modified = max(modified, (directory / "adapter.safetensors").stat().st_mtime)
    import hashlib

    digest = hashlib.sha256("|".join(fingerprint()).encode()).hexdigest()
    ctx = int(json.loads((trunk / "trunk.json").read_text())["max_seq_len"])
    return ModelFiles(count, dtype, size, modified, digest, ctx, sorted(adapters))


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


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to stay loaded after a request (None = forever). Number = seconds, string =
    duration ("5m", "1h30m", "10s", "-1"), negative = forever; missing = 5 minutes."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, bool):
        raise BadRequest("keep_alive: expected a number or a duration string")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration(value)
    else:
        raise BadRequest("keep_alive: expected a number or a duration string")
    return None if seconds < 0 else seconds


def _duration(text: str) -> float:
    import re

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(-?\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace("+", ""):
        raise BadRequest(f"keep_alive: invalid duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def expiry(keep_alive: float | None) -> float | None:
    return None if keep_alive is None else time.time() + keep_alive


@dataclass
class Piece:
    """What a running generation yields: text, and on the last piece the outcome."""

    text: str
    done: bool = False
    done_reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


class Generation:
    """A request admitted to the scheduler: iterate `pieces()` for its text."""

    def __init__(
        self,
        service: InferenceService,
        loaded: Loaded,
        ticket: Ticket,
        options: SamplingOptions,
        prompt_tokens: int,
        started: float,
        load_ns: int,
        keep_alive: float | None,
        route: list[dict[str, Any]],
    ) -> None:
        self.service, self.loaded, self.ticket = service, loaded, ticket
        self.options, self.prompt_tokens = options, prompt_tokens
        self.started, self.load_ns, self.keep_alive = started, load_ns, keep_alive
        self.route = route
        self.kernel = route[0]["kernel"] if route else None
        self.prompt_ids = list(ticket.request.prompt)
        # Tokens flow from the scheduler thread to the event loop from now on, and the ticket
        # leaves the queue count when it ends, even if no one ever iterates `pieces()` (a
        # client gone before its response started).
        loop = asyncio.get_running_loop()
        self.tokens: asyncio.Queue[int | None] = asyncio.Queue()

        def pump() -> None:
            for token in ticket:
                loop.call_soon_threadsafe(self.tokens.put_nowait, token)
            loop.call_soon_threadsafe(self.tokens.put_nowait, None)
            service.finished(loaded, ticket, keep_alive)

        threading.Thread(target=pump, name="inference-pump", daemon=True).start()

    def context(self) -> list[int]:
        """Prompt and reply token ids (Ollama's `context`, to continue a conversation)."""
        return self.prompt_ids + list(self.ticket.tokens)

    async def collect(self) -> tuple[str, Piece]:
        """The whole text of a non-streamed generation and its final (done) piece."""
        parts: list[str] = []
        final: Piece | None = None
        async for piece in self.pieces():
            parts.append(piece.text)
            final = piece
        assert final is not None and final.done, "a generation ends with a done piece"
        return "".join(parts), final

    async def pieces(self) -> AsyncIterator[Piece]:
        tokens, ticket = self.tokens, self.ticket
        decode = self.loaded.coordizer.decode
        stops = self.options.stop
        ids: list[int] = []
        sent = 0  # characters of the decoded text already yielded
        first_token_at: float | None = None
        reason = ""
        finished = False
        try:
            while True:
                token = await tokens.get()
                if token is None:
                    break
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                ids.append(token)
                text = decode(ids)
                hit = _find_stop(
                    text, stops, max(0, sent - max((len(s) for s in stops), default=0))
                )
                if hit is not None:
                    ticket.cancel()
                    if hit > sent:
                        yield Piece(text[sent:hit])
                    sent, reason = hit, "stop"
                    break
                safe = len(text) - _held_back(text, stops)
                if safe > sent:
                    yield Piece(text[sent:safe])
                    sent = safe
            if not reason:
                if ticket.done_reason == "cancelled":
                    raise InferenceError("the model was unloaded while generating")
                reason = ticket.done_reason or "stop"
                text = decode(ids)
                tail = text[sent:].replace("\ufffd", "") if stops else text[sent:]
                if tail:
                    yield Piece(tail)
                    sent = len(text)
            end = time.perf_counter()
            first = first_token_at or end
            eval_count = len(ids)
            stats = {
                "total_duration": int((end - self.started) * 1e9),
                "load_duration": self.load_ns,
                "prompt_eval_count": self.prompt_tokens,
                "prompt_eval_duration": max(1, int((first - self.started) * 1e9) - self.load_ns),
                "eval_count": eval_count,
                "eval_duration": max(1, int((end - first) * 1e9)),
                "ttft_ms": (first - self.started) * 1000,
                "route": self.route,
                "kernel": self.kernel,
            }
            stats.update(await asyncio.to_thread(self._reading))
            finished = True
            yield Piece("", done=True, done_reason=reason, stats=stats)
        finally:
            if not finished:
                ticket.cancel()  # the client went away or an error: free the row now
            self.service.finished(self.loaded, ticket, self.keep_alive)

    def _reading(self) -> dict[str, Any]:
        import torch

        hidden = self.ticket.hidden
        if not hidden:
            return {}
        states = torch.cat(hidden, dim=0)
        if states.shape[0] < 2:
            return {}
        reading = measure(states)
        return {"phi": reading.phi, "kappa": reading.kappa, "regime": reading.regime}


def _find_stop(text: str, stops: list[str], start: int) -> int | None:
    hits = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: list[str]) -> int:
    """Characters at the end to hold: half a UTF-8 character, or a prefix of a stop string."""
    hold = 0
    if text.endswith("\ufffd"):
        hold = len(text) - len(text.rstrip("\ufffd"))
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return hold


class InferenceService:
    """The process-wide serving state (see `service()`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._reaper: threading.Thread | None = None

    # ---- loading -------------------------------------------------------------------------
    def loaded(self) -> Loaded | None:
        return self._loaded

    def _ensure_loaded(self, keep_alive: float | None) -> tuple[Loaded, int]:
        """The current model, loading or reloading it when needed; returns it and the load time
        in ns (0 when it was already loaded)."""
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

        coordizer = Coordizer.load(models_dir() / "coordizer")
        dtype = default_inference_dtype("cpu") if not torch.cuda.is_available() else torch.bfloat16
        device = "cuda" if torch.cuda.is_available() else "cpu"
        trunk = load_trunk(models_dir() / "trunk", dtype=dtype, device=device)
        adapters = kernel_adapter_dirs()
        anchors = {
            k.index: k.anchor
            for k in Kernel.objects.filter(index__in=list(adapters)).only("index", "anchor")
        }
        constellation = Constellation(
            trunk, coordizer, size="minimal", max_adapters=max(16, len(adapters)), anchors=anchors
        )
        for index, directory in sorted(adapters.items()):
            adapter, _ = load_adapter(directory)
            constellation.load_adapter(index, adapter)
        routers = {"latest": constellation.router}
        for size in e8.PRESETS:
            preset = {
                k: constellation.anchors.get(k, e8.anchor(k)) for k in e8.preset_kernels(size)
            }
            routers[size] = Router(preset, constellation.router_config, coordizer.text_basin)
        scheduler = constellation.scheduler(max_batch=max_batch())
        scheduler.start()
        return Loaded(constellation, scheduler, current, routers, 0, time.time())

    def unload(self) -> bool:
        with self._lock:
            old, self._loaded = self._loaded, None
        if old is None:
            return False
        for ticket in list(old.tickets):
            ticket.cancel()
        old.scheduler.stop()
        old.scheduler.step()  # finishes the cancelled tickets: their streams end with an error
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
                loaded.scheduler.stop()

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
    ) -> Generation:
        """Admit one request; errors (no model, too long, busy) are raised before any output."""
        started = time.perf_counter()
        loaded, load_ns = await asyncio.to_thread(self._ensure_loaded, keep_alive)
        ids = list(context or []) + loaded.coordizer.encode(prompt)
        ids = ids or [loaded.coordizer.eot_id]
        if max(ids) >= loaded.coordizer.vocab_size or min(ids) < 0:
            raise BadRequest("context: token id outside the vocabulary")
        window = min(num_ctx or loaded.context_length, loaded.context_length)
        if len(ids) >= window:
            raise BadRequest(
                f"the input length ({len(ids)} tokens) exceeds the context length ({window})"
            )
        route: list[dict[str, Any]]
        if kernel is not None:
            route = [{"kernel": kernel, "role": e8.role_of(kernel).value, "distance": None}]
        else:
            found = loaded.routers[preset].route(prompt, 1)
            route = [
                {"kernel": k, "role": e8.role_of(k).value, "distance": d}
                for k, d in zip(found.kernels, found.distances, strict=True)
            ]
            kernel = found.kernels[0]
        if len(loaded.tickets) >= loaded.scheduler.max_batch + max_queue():
            raise Busy()
        # A budget that fits the context: the scheduler stops a row when its cache is full.
        ticket = loaded.scheduler.submit(Request(ids, [(kernel, 1.0)], options))
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
        old.scheduler.stop()

    threading.Thread(target=wait_then_stop, name="inference-retire", daemon=True).start()


def bootstrap_progress() -> str:
    from learning.models import FineTuneJob

    jobs = list(FineTuneJob.objects.filter(kind__in=["coordizer", "pretrain"]).order_by("-id")[:2])
    if not jobs:
        return "no bootstrap job is queued (train a coordizer and a trunk first)"
    return "; ".join(
        f"{job.kind} job {job.pk} is {job.status} ({job.progress * 100:.0f}%)" for job in jobs
    )


_service = InferenceService()


def service() -> InferenceService:
    return _service
