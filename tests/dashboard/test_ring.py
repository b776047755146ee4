"""The recent-history ring keeps the last hour, downsampled to at most 360 points per node."""

from __future__ import annotations

import itertools
import time
import uuid

from dashboard import ring
from dashboard.histories import downsample


def test_two_hours_of_samples_reads_back_as_at_most_360_ending_with_the_latest() -> None:
    topic = f"test-{uuid.uuid4().hex[:8]}"
    store = ring.ring()
    now = time.time()
    start = now - 2 * 3600  # two hours: the first is older than the ring keeps
    for i in range(0, 2 * 3600, 2):
        t = start + i
        store.record(topic, "node-a", {"seq": i, "t": t}, t)
    got = store.read(topic, now=now)
    assert 340 <= len(got) <= ring.POINTS
    assert got[-1]["seq"] == 2 * 3600 - 2  # the latest sample is always there
    assert all(s["t"] >= now - ring.SPAN_S for s in got)  # nothing older than an hour
    assert [s["t"] for s in got] == sorted(s["t"] for s in got)
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(got)]
    assert max(gaps) <= 2 * ring.BUCKET_S  # evenly spread over the hour


def test_nodes_are_kept_apart_and_merged_in_time_order() -> None:
    topic = f"test-{uuid.uuid4().hex[:8]}"
    store = ring.ring()
    now = time.time()
    for i in range(60):
        store.record(topic, "node-a", {"node": "a", "t": now - 600 + i * 10}, now - 600 + i * 10)
        store.record(topic, "node-b", {"node": "b", "t": now - 595 + i * 10}, now - 595 + i * 10)
    got = store.read(topic, now=now)
    assert len(got) == 120
    assert [s["node"] for s in got[:4]] == ["a", "b", "a", "b"]


def test_downsample_keeps_at_most_n_evenly_and_the_newest() -> None:
    rows = list(range(10_000))
    picked = downsample(rows, 360)
    assert len(picked) == 360 and picked[-1] == 9_999 and picked == sorted(picked)
    assert picked[0] < 100
    assert downsample(rows[:5], 360) == rows[:5]
