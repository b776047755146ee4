"""The telemetry sampler measures this machine: host numbers from psutil, GPUs from NVML, and on a
machine without an NVIDIA GPU it says so plainly and reports no GPU number."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

import psutil
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from dashboard import ring
from dashboard.kernels import petrie_projection
from dashboard.sampler import ABSENT_PREFIX, Nvml, Sampler
from tests.dashboard.ws import connect, histories, next_of

SERVICES = bool(os.environ.get("REDIS_URL"))


def _nvml_loads() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_host_numbers_are_this_machines() -> None:
    sampler = Sampler(node="test-node")
    time.sleep(0.2)
    host = sampler.sample()["host"]
    assert host["cpu_count"] == psutil.cpu_count()
    assert host["cpu_percent"] is None or 0.0 <= host["cpu_percent"] <= 100.0
    assert 0 < host["memory_used"] <= host["memory_total"] == psutil.virtual_memory().total
    disk = psutil.disk_usage(str(settings.DATA_DIR))
    assert host["disk_path"] == str(settings.DATA_DIR) and host["disk_total"] == disk.total
    assert 0 < host["disk_used"] <= host["disk_total"]
    assert len(host["load_avg"]) == 3 and all(v >= 0 for v in host["load_avg"])
    assert host["hostname"] == os.uname().nodename


def test_cpu_percent_sees_a_busy_core() -> None:
    sampler = Sampler(node="test-node")
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # keep one core busy
        pass
    busy = sampler.sample()["host"]["cpu_percent"]
    assert busy is not None and busy >= 100 / (psutil.cpu_count() or 1) * 0.5


@pytest.mark.skipif(_nvml_loads(), reason="this machine has NVML: the GPU test below applies")
def test_without_a_gpu_it_says_so_plainly_and_reports_no_gpu_numbers() -> None:
    sample = Sampler(node="test-node").sample()
    assert sample["gpu_status"] == "absent"
    assert sample["gpu_message"].startswith(f"{ABSENT_PREFIX}: NVML could not be loaded (")
    assert sample["gpus"] == []


@pytest.mark.skipif(not _nvml_loads(), reason="no NVML on this machine")
def test_with_nvml_every_gpu_is_read() -> None:
    import pynvml

    sample = Sampler(node="test-node").sample()
    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    if count == 0:
        assert sample["gpu_status"] == "absent" and sample["gpus"] == []
        return
    assert sample["gpu_status"] == "ok" and len(sample["gpus"]) == count
    for gpu in sample["gpus"]:
        assert gpu["memory_total"] is None or gpu["memory_used"] <= gpu["memory_total"]
        assert isinstance(gpu["processes"], list)


class _NotSupported(Exception):
    pass


class _PartlyReadableNvml:
    """NVML's interface for one GPU whose power and clocks cannot be read (as on many laptops)."""

    NVMLError = _NotSupported
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return "gpu0"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"Test GPU"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> object:
        return type("Memory", (), {"used": 1024, "total": 4096})()

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        return 41

    def __getattr__(self, name: str) -> object:
        def unsupported(*args: object) -> object:
            raise _NotSupported(f"{name}: Not Supported")

        return unsupported


def test_a_value_nvml_cannot_read_is_null_never_a_number() -> None:
    nvml = Nvml.__new__(Nvml)
    nvml.absent, nvml.nvml = None, _PartlyReadableNvml()
    status, message, (gpu,) = nvml.read()
    assert status == "ok" and message == "1 NVIDIA GPU on this node"
    assert gpu["name"] == "Test GPU" and gpu["memory_used"] == 1024 and gpu["temperature_c"] == 41
    for unreadable in (
        "uuid", "utilization_gpu", "utilization_memory", "power_w", "power_limit_w",
        "clock_sm_mhz", "clock_mem_mhz",
    ):  # fmt: skip
        assert gpu[unreadable] is None, unreadable
    assert gpu["processes"] == []


def test_the_petrie_projection_puts_the_240_roots_on_8_rings_of_30() -> None:
    xy = petrie_projection()
    assert xy.shape == (240, 2)
    radii = (xy**2).sum(axis=1) ** 0.5
    assert radii.max() == pytest.approx(1.0)
    rings: dict[float, int] = {}
    for r in radii.round(6):
        rings[float(r)] = rings.get(float(r), 0) + 1
    assert len(rings) == 8 and set(rings.values()) == {30}


@pytest.mark.skipif(not SERVICES, reason="one sampler per node is enforced through Redis")
def test_only_one_sampler_per_node_samples() -> None:
    ring.ring().redis.delete("qig:telemetry:sampler:claim-node")  # type: ignore[union-attr]
    first, second = Sampler(node="claim-node"), Sampler(node="claim-node")
    assert first._claim_node() and not second._claim_node()
    assert first._claim_node()  # the holder keeps it
    ring.ring().redis.delete("qig:telemetry:sampler:claim-node")  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
async def test_a_running_sampler_publishes_at_its_interval(developer) -> None:
    communicator = await connect(developer)
    await sync_to_async(ring.ring().clear)()
    sampler = Sampler(interval_s=0.2, node="rate-node").start()
    try:
        got = await histories(communicator, ["gpu"])
        assert all(s["kind"] == "gpu.sample" for s in got["gpu"]["samples"])
        first = (await next_of(communicator, "event"))["payload"]
        seqs, times = [first["seq"]], [datetime.fromisoformat(first["time"])]
        async with asyncio.timeout(10):
            while len(seqs) < 10:
                payload = (await next_of(communicator, "event"))["payload"]
                seqs.append(payload["seq"])
                times.append(datetime.fromisoformat(payload["time"]))
    finally:
        sampler.stop()
    assert seqs == list(range(seqs[0], seqs[0] + 10))  # none lost
    span = (times[-1] - times[0]).total_seconds()
    assert 9 * 0.2 * 0.7 < span < 9 * 0.2 * 2.0, span
    await communicator.disconnect()
