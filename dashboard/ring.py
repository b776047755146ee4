"""Recent history of live-only telemetry (the `gpu` samples), readable by the web process.

The last hour is kept already downsampled: the hour is cut into ``POINTS`` buckets of
``SPAN_S / POINTS`` seconds (10 s) and each node keeps the newest sample of each bucket, so a
reader gets at most ``POINTS`` samples per node, oldest first, ending with the latest sample.

Where it lives: in embedded mode the sampler is a thread of the web process, so a dict of deques
in memory; in services mode the sampler runs in the `gpu` Celery worker, so a Redis list per
topic and node (``qig:telemetry:ring:<topic>:<node>``) beside a set of the nodes that wrote one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from functools import lru_cache
from typing import Any, Protocol

import redis
from django.conf import settings

POINTS = 360
SPAN_S = 3600.0
BUCKET_S = SPAN_S / POINTS
PREFIX = "qig:telemetry:ring"


class Ring(Protocol):
    def record(self, topic: str, node: str, sample: dict[str, Any], t: float) -> None: ...

    def read(self, topic: str, now: float | None = None) -> list[dict[str, Any]]: ...


def _bucket(t: float) -> int:
    return int(t // BUCKET_S)


def _merge(per_node: list[list[tuple[float, dict[str, Any]]]], now: float) -> list[dict[str, Any]]:
    """Every node's samples of the last hour, oldest first."""
    cutoff = now - SPAN_S
    merged = [(t, s) for entries in per_node for t, s in entries if t >= cutoff]
    merged.sort(key=lambda entry: entry[0])
    return [s for _, s in merged]


class MemoryRing:
    """Embedded mode: the sampler and the consumers share the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rings: dict[tuple[str, str], deque[tuple[int, float, dict[str, Any]]]] = {}

    def record(self, topic: str, node: str, sample: dict[str, Any], t: float) -> None:
        bucket = _bucket(t)
        with self._lock:
            ring = self._rings.setdefault((topic, node), deque(maxlen=POINTS))
            if ring and ring[-1][0] == bucket:
                ring[-1] = (bucket, t, sample)
            else:
                ring.append((bucket, t, sample))

    def read(self, topic: str, now: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            per_node = [
                [(t, s) for _, t, s in r] for (tp, _), r in self._rings.items() if tp == topic
            ]
        return _merge(per_node, time.time() if now is None else now)

    def clear(self) -> None:
        with self._lock:
            self._rings.clear()


class RedisRing:
    """Services mode: the sampler writes from the `gpu` worker, the web process reads."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def _key(self, topic: str, node: str) -> str:
        return f"{PREFIX}:{topic}:{node}"

    def record(self, topic: str, node: str, sample: dict[str, Any], t: float) -> None:
        key, bucket = self._key(topic, node), _bucket(t)
        entry = json.dumps({"b": bucket, "t": t, "s": sample}, separators=(",", ":"))
        last = self.redis.lindex(key, -1)
        with self.redis.pipeline() as pipe:
            if last is not None and json.loads(last)["b"] == bucket:
                pipe.lset(key, -1, entry)
            else:
                pipe.rpush(key, entry)
                pipe.ltrim(key, -POINTS, -1)
            pipe.expire(key, int(SPAN_S))
            pipe.sadd(f"{PREFIX}:{topic}:nodes", node)
            pipe.execute()

    def read(self, topic: str, now: float | None = None) -> list[dict[str, Any]]:
        nodes_key = f"{PREFIX}:{topic}:nodes"
        per_node = []
        for raw in sorted(self.redis.smembers(nodes_key)):
            node = raw.decode() if isinstance(raw, bytes) else str(raw)
            entries = self.redis.lrange(self._key(topic, node), 0, -1)
            if not entries:  # expired: the node stopped sampling an hour ago
                self.redis.srem(nodes_key, node)
                continue
            per_node.append([(e["t"], e["s"]) for e in map(json.loads, entries)])
        return _merge(per_node, time.time() if now is None else now)

    def clear(self) -> None:
        for key in self.redis.scan_iter(f"{PREFIX}:*"):
            self.redis.delete(key)


@lru_cache(maxsize=1)
def _memory() -> MemoryRing:
    return MemoryRing()


def ring() -> MemoryRing | RedisRing:
    """This mode's ring (Redis in services mode, this process's memory in embedded mode)."""
    if settings.SERVICES_MODE:
        return _redis(settings.REDIS_URL)
    return _memory()


@lru_cache(maxsize=4)
def _redis(url: str) -> RedisRing:
    return RedisRing(url)
