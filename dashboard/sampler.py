"""The telemetry sampler: host CPU/RAM/disk (psutil) and per-GPU stats (NVML, nvidia-ml-py),
published on the `gpu` topic every QIG_TELEMETRY_INTERVAL_S seconds (docs/telemetry.md).

It runs where the GPUs are, once per node: in embedded mode a thread of the `qig up` web process,
started with the embedded worker (``dashboard.apps`` registers it with ``qigcenter.embedded``); in
services mode a thread of the Celery worker that consumes the `gpu` queue (started on
``worker_ready``, see ``dashboard.tasks``). In services mode a Redis key per
node (``qig:telemetry:sampler:<node>``) makes sure a second `gpu` worker on the same node stands
by instead of sampling twice.

Nothing is invented: a value NVML cannot read is null, and with no NVIDIA GPU (or no NVML) the
sample says ``gpu_status: "absent"`` with the reason in ``gpu_message`` and lists no GPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psutil
from channels.layers import get_channel_layer
from django.conf import settings

from dashboard import ring
from dashboard.services import event_message, group_name, publish
from qigcenter import lifecycle

log = logging.getLogger(__name__)

TOPIC = "gpu"
ABSENT_PREFIX = "No NVIDIA GPU on this node"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _read(fn: Callable[[], Any]) -> Any:
    """One NVML (or psutil) reading, or None when it cannot be read: never a made-up number."""
    try:
        return fn()
    except Exception:  # NVMLError_NotSupported, NoPermission, GpuIsLost, psutil.Error …
        return None


def _process_name(pid: int) -> str:
    return str(psutil.Process(pid).name())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class CpuMeter:
    """Host CPU utilisation between two calls, from /proc/stat-style counters (psutil.cpu_times).

    Kept per sampler instead of psutil.cpu_percent(), whose "since the last call" state is global
    to the process and would be reset by anyone else calling it.
    """

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    @staticmethod
    def _busy_total(t: Any) -> tuple[float, float]:
        total = sum(t)
        # Linux counts guest time inside user/nice too.
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total - idle, total

    def percent(self) -> float | None:
        current = psutil.cpu_times()
        busy0, total0 = self._busy_total(self._last)
        busy1, total1 = self._busy_total(current)
        self._last = current
        if total1 <= total0:
            return None  # no time passed on the counters: nothing measured
        return round(max(0.0, min(100.0, 100.0 * (busy1 - busy0) / (total1 - total0))), 1)


def host_stats(cpu: CpuMeter) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    disk_path = str(settings.DATA_DIR)
    disk = _read(lambda: psutil.disk_usage(disk_path))
    load = _read(os.getloadavg)
    return {
        "hostname": socket.gethostname(),
        "cpu_percent": cpu.percent(),
        "cpu_count": psutil.cpu_count(),
        "load_avg": [round(v, 2) for v in load] if load else None,
        "memory_used": int(memory.total - memory.available),
        "memory_total": int(memory.total),
        "disk_used": int(disk.used) if disk else None,
        "disk_total": int(disk.total) if disk else None,
        "disk_path": disk_path,
    }


class Nvml:
    """NVML, initialised once per sampler; ``absent`` says plainly why there is no GPU."""

    def __init__(self) -> None:
        self.absent: str | None = None
        self.nvml: Any = None
        try:
            import pynvml
        except ImportError as exc:
            self.absent = f"{ABSENT_PREFIX}: nvidia-ml-py is not installed ({exc})"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.absent = f"{ABSENT_PREFIX}: NVML could not be loaded ({exc})"
            return
        self.nvml = pynvml

    def shutdown(self) -> None:
        if self.nvml is not None:
            _read(self.nvml.nvmlShutdown)
            self.nvml = None

    def read(self) -> tuple[str, str, list[dict[str, Any]]]:
        """(gpu_status, gpu_message, gpus)."""
        if self.nvml is None:
            return "absent", self.absent or f"{ABSENT_PREFIX}: NVML is shut down", []
        n = self.nvml
        try:
            count = int(n.nvmlDeviceGetCount())
        except n.NVMLError as exc:
            return "error", f"NVML is loaded but could not count the GPUs ({exc})", []
        if count == 0:
            return "absent", f"{ABSENT_PREFIX}: NVML found no devices", []
        gpus, failed = [], []
        for index in range(count):
            try:
                handle = n.nvmlDeviceGetHandleByIndex(index)
            except n.NVMLError as exc:
                failed.append(f"GPU {index}: {exc}")
                continue
            gpus.append(self._device(index, handle))
        if failed:
            return "error", "NVML could not open " + "; ".join(failed), gpus
        plural = "s" if count > 1 else ""
        return "ok", f"{count} NVIDIA GPU{plural} on this node", gpus

    def _device(self, index: int, handle: Any) -> dict[str, Any]:
        n = self.nvml
        util = _read(lambda: n.nvmlDeviceGetUtilizationRates(handle))
        memory = _read(lambda: n.nvmlDeviceGetMemoryInfo(handle))
        power = _read(lambda: n.nvmlDeviceGetPowerUsage(handle))  # milliwatts
        limit = _read(lambda: n.nvmlDeviceGetEnforcedPowerLimit(handle))
        return {
            "index": index,
            "name": _text(_read(lambda: n.nvmlDeviceGetName(handle))),
            "uuid": _text(_read(lambda: n.nvmlDeviceGetUUID(handle))),
            "utilization_gpu": util.gpu if util is not None else None,
            "utilization_memory": util.memory if util is not None else None,
            "memory_used": int(memory.used) if memory is not None else None,
            "memory_total": int(memory.total) if memory is not None else None,
            "temperature_c": _read(
                lambda: n.nvmlDeviceGetTemperature(handle, n.NVML_TEMPERATURE_GPU)
            ),
            "power_w": round(power / 1000, 1) if power is not None else None,
            "power_limit_w": round(limit / 1000, 1) if limit is not None else None,
            "clock_sm_mhz": _read(lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_SM)),
            "clock_mem_mhz": _read(lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_MEM)),
            "processes": self._processes(handle),
        }

    def _processes(self, handle: Any) -> list[dict[str, Any]]:
        n = self.nvml
        seen: dict[int, dict[str, Any]] = {}
        for getter in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            for p in _read(partial(getattr(n, getter), handle)) or []:
                used = getattr(p, "usedGpuMemory", None)
                seen.setdefault(
                    int(p.pid),
                    {
                        "pid": int(p.pid),
                        "name": _read(partial(_process_name, int(p.pid))),
                        "memory_used": int(used) if isinstance(used, int) else None,
                    },
                )
        return list(seen.values())


class Sampler:
    """Samples this node every ``interval_s`` seconds, keeps the ring, publishes on `gpu`."""

    def __init__(self, interval_s: float | None = None, node: str | None = None) -> None:
        self.interval_s = float(interval_s or settings.TELEMETRY_INTERVAL_S)
        self.node = node or socket.gethostname()
        self.seq = 0
        self._cpu = CpuMeter()
        self._nvml: Nvml | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- one sample ------------------------------------------------------------------------
    def sample(self) -> dict[str, Any]:
        """One `gpu.sample` payload (``time``: when it was taken, just before it is published)."""
        if self._nvml is None:
            self._nvml = Nvml()
        status, message, gpus = self._nvml.read()
        self.seq += 1
        return {
            "kind": "gpu.sample",
            "node": self.node,
            "pid": os.getpid(),
            "seq": self.seq,
            "interval_s": self.interval_s,
            "host": host_stats(self._cpu),
            "gpu_status": status,
            "gpu_message": message,
            "gpus": gpus,
            "time": now_iso(),
        }

    def tick(self) -> dict[str, Any]:
        """Sample, remember in the ring, publish. Returns the payload."""
        payload = self.sample()
        ring.ring().record(TOPIC, self.node, payload, time.time())
        self._publish(payload)
        return payload

    def _publish(self, payload: dict[str, Any]) -> None:
        if not settings.SERVICES_MODE:
            publish(TOPIC, payload)  # through the web server's loop (in-memory layer)
            return
        # Services mode: one event loop of our own, so channels-redis keeps its connection.
        layer = get_channel_layer()
        if layer is None:
            return
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(
            layer.group_send(group_name(TOPIC), event_message(TOPIC, payload))
        )

    # ---- the loop --------------------------------------------------------------------------
    def _claim_node(self) -> bool:
        """Services mode: only one sampler per node (a Redis key refreshed every sample)."""
        if not settings.SERVICES_MODE:
            return True
        client = ring.ring().redis  # type: ignore[union-attr]
        key, ttl = f"qig:telemetry:sampler:{self.node}", max(3, int(3 * self.interval_s) + 1)
        if client.set(key, self._id, nx=True, ex=ttl):
            return True
        if client.get(key) == self._id.encode():
            client.expire(key, ttl)
            return True
        return False

    def _run(self) -> None:
        log.info("telemetry sampler on %s: every %.2f s", self.node, self.interval_s)
        due = time.monotonic()
        try:
            while not self._stop.is_set() and not lifecycle.shutting_down.is_set():
                try:
                    if self._claim_node():
                        self.tick()
                except Exception:
                    log.warning("telemetry sample failed", exc_info=True)
                due += self.interval_s
                now = time.monotonic()
                if due < now:  # fell behind (a stalled channel layer): skip, don't burst
                    due = now
                self._stop.wait(due - now)
        finally:
            if self._nvml is not None:
                self._nvml.shutdown()
            if self._loop is not None:
                self._loop.close()
            log.info("telemetry sampler stopped")

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="qig-telemetry-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


_running: Sampler | None = None
_lock = threading.Lock()


def start_sampler() -> Sampler:
    """Start this process's sampler once (later calls return the running one)."""
    global _running
    with _lock:
        if _running is None:
            _running = Sampler().start()
        return _running


def stop_sampler() -> None:
    global _running
    with _lock:
        if _running is not None:
            _running.stop()
            _running = None
