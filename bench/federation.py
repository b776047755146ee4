"""Federation under load: a central `qig up` (QIG_FEDERATION=central, this shell's mode: services
mode when DATABASE_URL and REDIS_URL are set, embedded otherwise) and N simulated edges, websocket
clients in this one process (asyncio), each enrolled and sending one signed basin packet a second
for S seconds.

python -m bench.federation [--edges 200] [--seconds 60] [--kernels-per-packet 1]
                           [--restart-at SECONDS] [--no-applied]      # last line: one JSON object

Each edge speaks the wire of `federation.consumers` like the real client (`federation.client`):
a signed hello, then packets (at most `WINDOW` ahead of central's acks), a ping every heartbeat,
the newest version it received as `applied`, at once and then at most every 0.5 s, as the client
does (unless --no-applied). Central's broadcasts come as one `anchor` or one `anchors` frame per
batch; each anchor in it counts as received when the frame arrives. It keeps its own
in-memory outbox: a packet stays until central acknowledges its id, and after a reconnect
(exponential backoff with jitter, as the real client) it goes again with the same id, signed
again with a fresh ts. Unlike the real client it sends a packet the moment it is made (the real
one polls its database outbox every 0.25 s), so the latencies are central's and the network's.

Every edge holds the "minimal" preset (the same 3 kernels), so every merge is broadcast to every
edge. A packet moves `--kernels-per-packet` held kernels (round-robin): the anchor the edge last
received from central (the E8 anchor at first) a small random step along the geodesic toward
another E8 anchor, weight 100.

Enrolment: each edge's node is added and joined with `federation.central.issue_token` and
`federation.central.join` (the code behind POST /api/v1/nodes/ and POST
/api/v1/federation/join/) in one `manage.py shell` against central's database and data dir: the
join endpoint is throttled to 20 a minute per address, and the rate is not configurable.

--restart-at SECONDS: central (its whole process tree) is killed with SIGKILL that many seconds
into the run and started again on the same port, data dir and database; the edges reconnect.

After the S seconds the outboxes drain (up to 120 s: `drained`, `drain_s`), then the broadcasts
settle (every connected edge has the newest acknowledged version, or nothing came for 5 s:
`settle_s`); central's counters are read then (GET /api/v1/nodes/ as admin, and its
ReceivedPacket and AnchorVersion rows through `manage.py shell`).

Keys: edges, packets_sent (packet ids made), packets_applied (central's `packets_in`, summed over
the bench's nodes), lost (sent − applied, once the outboxes drained), duplicates_applied
(packets_in − the distinct ids central acknowledged), duplicates_acked (central's `duplicates`:
resends answered as duplicates), rejected (central's `packets_rejected`), max_packet_bytes (the
largest message an edge sent), p50_ms / p99_ms (a packet's send → its merged anchor broadcast
reaching each OTHER edge, over all (packet, receiving edge) pairs), acks_p50_ms / acks_p99_ms
(send → the sender's ack), reconnects, seconds, mode, restarted; and for diagnosis: missing_ids
(sent ids with no ReceivedPacket row on central), merged_twice (packet ids in more than
`--kernels-per-packet` anchor versions), missed_deliveries ((packet, other edge) pairs never
delivered: an edge reconnecting only catches up on each kernel's newest version),
bench_loop_lag_ms_p99 and bench_cpu_s (this process: a saturated client inflates latency too),
central_cpu_s (central's process tree over the run, without a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psutil
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from constellation.engine import e8, geodesic
from federation import packets

from .common import emit

if TYPE_CHECKING:
    from tests.live.product import Product

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 32  # packets in flight ahead of acks (federation.client.WINDOW)
MAX_BACKOFF_S = 30.0  # federation.client.MAX_BACKOFF_S
DRAIN_S = 120.0
SETTLE_S = 5.0  # broadcasts: nothing new for this long and they are all in
WEIGHT = 100.0
SIZE = "minimal"
HELD = tuple(e8.preset_kernels(SIZE))
E8 = e8.anchors()
# The consumer sends `json.dumps(anchor_message)`: type, kernel and seq come first. Read them
# without parsing the 64 floats (the anchor is parsed only when the edge moves that kernel).
ANCHOR = re.compile(r'\{"type": "anchor", "kernel": (\d+), "seq": (\d+),')
FRAME = '{"type": "anchors", "anchors": ['  # several kernels merged in one of central's batches
APPLIED_EVERY_S = 0.5  # federation.client.APPLIED_EVERY_S

ENROL = """
import json, os
from federation import central
from federation.models import Node
io = os.environ["BENCH_FEDERATION_IO"]
with open(os.path.join(io, "keys.json")) as f:
    wanted = json.load(f)
nodes = []
for name, public in wanted:
    node = Node.objects.create(name=name, size="minimal")
    node = central.join(central.issue_token(node), public, "minimal")
    nodes.append(str(node.uuid))
with open(os.path.join(io, "nodes.json"), "w") as f:
    json.dump(nodes, f)
"""

TRUTH = """
import json, os
from federation.models import AnchorVersion, ReceivedPacket
io = os.environ["BENCH_FEDERATION_IO"]
rows = ReceivedPacket.objects.filter(node__name__startswith="bench-")
received = [[str(p), at.timestamp()] for p, at in rows.values_list("packet_id", "sent_at")]
versions = [[q, ps] for q, ps in AnchorVersion.objects.values_list("seq", "packets")]
with open(os.path.join(io, "truth.json"), "w") as f:
    json.dump({"received": received, "versions": versions}, f)
"""


# ---- one simulated edge --------------------------------------------------------------------------
class Edge:
    def __init__(self, run: Run, index: int, node: str, key: Ed25519PrivateKey) -> None:
        self.run, self.index, self.node, self.key = run, index, node, key
        self.outbox: dict[str, dict[str, Any]] = {}  # packet id → unsigned body, oldest first
        self.in_flight: set[str] = set()
        self.sends: dict[str, list[float]] = {}  # packet id → the time of each send
        self.acked: set[str] = set()
        self.ack_versions: dict[str, dict[int, int]] = {}  # packet id → {kernel: seq}
        self.ack_ms: list[float] = []
        self.refused: dict[str, str] = {}  # packet id → central's reason
        self.received_seq = array("q")  # every anchor broadcast received: seq, and when
        self.received_at = array("d")
        self.anchors: dict[int, tuple[int, Any]] = {}  # kernel → (seq, raw text or parsed anchor)
        self.applied = 0  # the newest seq received (the hello's `applied`)
        self.turn = index
        self.welcomes = 0
        self.connected = False
        self.was_connected = False
        self.errors: list[str] = []
        self.wake = asyncio.Event()
        self.applied_ready = asyncio.Event()
        self.rng = random.Random(index)

    # -- packets
    def make_packet(self) -> str:
        per = self.run.kernels_per_packet
        kernels = [HELD[(self.turn + j) % len(HELD)] for j in range(per)]
        self.turn += per
        body = packets.basin_body(
            self.node,
            {k: (self._moved(k), WEIGHT) for k in kernels},
            phi=0.4,
            regime="geometric",
        )
        self.outbox[body["id"]] = body
        self.wake.set()
        return str(body["id"])

    def _moved(self, kernel: int) -> np.ndarray:
        seq, current = self.anchors.get(kernel, (0, None))
        if isinstance(current, str):
            message = json.loads(current)
            items = message["anchors"] if message.get("type") == "anchors" else [message]
            found = next(m for m in items if m["kernel"] == kernel)
            current = np.asarray(found["anchor"], dtype=np.float64)
            self.anchors[kernel] = (seq, current)
        if current is None:
            current = E8[kernel]
        other = self.rng.choice([k for k in range(len(E8)) if k != kernel])
        return np.asarray(geodesic(current, E8[other], self.rng.uniform(0.005, 0.02)))

    # -- the connection
    async def send(self, ws: Any, wire: str) -> None:
        self.run.max_bytes = max(self.run.max_bytes, len(wire))  # ASCII: characters are bytes
        await ws.send(wire)

    async def live(self, url: str, stop: asyncio.Event, ready: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(url, stop, ready)
            except Exception as exc:  # any failure: disconnected, back off, try again
                attempt = 1 if self.was_connected else attempt + 1
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            self.connected = False
            if stop.is_set():
                break
            cap = min(MAX_BACKOFF_S, 2.0 ** min(attempt, 5))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.uniform(0.5, 1.0) * cap)

    async def _session(self, url: str, stop: asyncio.Event, ready: asyncio.Event) -> None:
        self.was_connected = False
        async with websockets.connect(
            url, open_timeout=10, ping_interval=20, ping_timeout=20, max_size=2**20
        ) as ws:
            await self.send(ws, packets.hello(self.node, self.applied, self.key, time.time()))
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            if first.get("type") != "welcome":
                raise ConnectionError(f"no welcome: {first}")
            heartbeat = float(first.get("heartbeat_s", 10.0))
            self.in_flight.clear()
            self.was_connected = self.connected = True
            self.welcomes += 1
            ready.set()
            tasks = [
                asyncio.create_task(self._reader(ws)),
                asyncio.create_task(self._sender(ws)),
                asyncio.create_task(self._heartbeat(ws, heartbeat)),
                asyncio.create_task(self._acknowledger(ws)),
                asyncio.create_task(stop.wait()),
            ]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            failures = [task.exception() for task in done]  # each one read: none left unretrieved
            for failure in failures:
                if failure is not None:
                    raise failure
            if not stop.is_set():
                raise ConnectionError("central closed the connection")

    async def _reader(self, ws: Any) -> None:
        async for raw in ws:
            now = time.time()
            text = raw if isinstance(raw, str) else raw.decode("utf-8")
            if text.startswith(FRAME):
                for item in ANCHOR.finditer(text):
                    self._anchor(int(item[1]), int(item[2]), text, now)
                continue
            found = ANCHOR.match(text)
            if found is None:
                message = json.loads(text)
                kind = message.get("type")
                if kind == "anchor":  # not in the expected layout: read it the long way
                    self._anchor(int(message["kernel"]), int(message["seq"]), text, now)
                elif kind == "ack":
                    self._ack(message, now)
                elif kind == "rejected":
                    pid = str(message.get("id", ""))
                    self.refused[pid] = f"{message.get('reason')}: {message.get('detail', '')}"
                    self.outbox.pop(pid, None)  # kept aside, out of the queue (as the client)
                    self.in_flight.discard(pid)
                    self.wake.set()
                elif kind == "refused":
                    raise ConnectionError(f"central refused: {message.get('reason')}")
                continue
            self._anchor(int(found[1]), int(found[2]), text, now)

    def _anchor(self, kernel: int, seq: int, text: str, now: float) -> None:
        self.received_seq.append(seq)
        self.received_at.append(now)
        if seq > self.anchors.get(kernel, (0, None))[0]:
            self.anchors[kernel] = (seq, text)
        if seq > self.applied:
            self.applied = seq
            self.applied_ready.set()

    async def _acknowledger(self, ws: Any) -> None:
        """As the client: the newest version back at once, then at most every 0.5 s."""
        sent = 0
        while True:
            await self.applied_ready.wait()
            self.applied_ready.clear()
            if self.applied > sent and self.run.send_applied:
                sent = self.applied
                await self.send(ws, json.dumps({"type": "applied", "seq": sent}))
            await asyncio.sleep(APPLIED_EVERY_S)

    def _ack(self, message: dict[str, Any], now: float) -> None:
        pid = str(message.get("id", ""))
        self.outbox.pop(pid, None)
        self.in_flight.discard(pid)
        sends = self.sends.get(pid)
        if sends:
            self.ack_ms.append((now - sends[-1]) * 1000)
            self.acked.add(pid)
            if isinstance(message.get("versions"), dict):
                self.ack_versions[pid] = {int(k): int(v) for k, v in message["versions"].items()}
            else:
                self.run.duplicate_acks += 1
        self.wake.set()

    async def _sender(self, ws: Any) -> None:
        while True:
            self.wake.clear()
            for pid in list(self.outbox):
                if len(self.in_flight) >= WINDOW:
                    break
                body = self.outbox.get(pid)
                if body is None or pid in self.in_flight:
                    continue
                now = time.time()
                signed = packets.stamp_and_sign(body, self.key, now)
                wire = packets.encoded({"type": "packet", "packet": signed})
                self.in_flight.add(pid)
                self.sends.setdefault(pid, []).append(now)
                await self.send(ws, wire)
            await self.wake.wait()

    async def _heartbeat(self, ws: Any, every: float) -> None:
        while True:
            await self.send(ws, json.dumps({"type": "ping"}))
            await asyncio.sleep(every)


# ---- the run -------------------------------------------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace, central: Product) -> None:
        self.args = args
        self.central = central
        self.kernels_per_packet = args.kernels_per_packet
        self.send_applied = not args.no_applied
        self.max_bytes = 0
        self.duplicate_acks = 0
        self.edges: list[Edge] = []
        self.sent: dict[str, int] = {}  # packet id → edge index
        self.restart_down_s: float | None = None
        self.restarted = False

    async def measure(self, nodes: list[str], keys: list[Ed25519PrivateKey]) -> dict[str, Any]:
        url = self.central.base.replace("http", "ws") + "/ws/federation/"
        self.edges = [Edge(self, i, n, k) for i, (n, k) in enumerate(zip(nodes, keys, strict=True))]
        stop = asyncio.Event()
        readies = [asyncio.Event() for _ in self.edges]
        tasks = []
        for edge, ready in zip(self.edges, readies, strict=True):
            tasks.append(asyncio.create_task(edge.live(url, stop, ready)))
            await asyncio.sleep(0.01)  # not all in the same instant
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 300)
        connect_s = time.monotonic() - began
        connected_at_start = sum(e.connected for e in self.edges)
        await asyncio.sleep(2)  # the hello burst settles

        start = time.time()
        cpu0, central_cpu0 = time.process_time(), tree_cpu(self.central)
        lags: list[float] = []
        done = asyncio.Event()
        background = [
            asyncio.create_task(loop_lag(lags, done)),
            asyncio.create_task(self._progress(start, done)),
        ]
        restart = (
            asyncio.create_task(self._restart(start + self.args.restart_at))
            if self.args.restart_at is not None
            else None
        )
        await asyncio.gather(*(self._generate(e, start) for e in self.edges))
        generated = time.time()
        deadline = time.monotonic() + DRAIN_S
        while any(e.outbox for e in self.edges) or (restart is not None and not restart.done()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        drain_s = time.time() - generated
        # Then the broadcasts still on their way: until every connected edge has the newest
        # version central acknowledged, or nothing arrived for SETTLE_S (or the deadline).
        newest = max(
            (seq for e in self.edges for v in e.ack_versions.values() for seq in v.values()),
            default=0,
        )
        heard, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline + SETTLE_S:
            if all(e.applied >= newest for e in self.edges if e.connected):
                break
            total = sum(len(e.received_seq) for e in self.edges)
            if total != heard:
                heard, quiet_since = total, time.monotonic()
            elif time.monotonic() - quiet_since > SETTLE_S:
                break
            await asyncio.sleep(0.1)
        settle_s = time.time() - generated - drain_s
        cpu = time.process_time() - cpu0
        central_cpu = None if self.restarted else tree_cpu(self.central) - central_cpu0
        done.set()
        stop.set()
        await asyncio.gather(*tasks, *background)
        if restart is not None:
            await restart  # raises if central did not come back
        return {
            "connect_s": round(connect_s, 1),
            "edges_connected_at_start": connected_at_start,
            "drain_s": round(drain_s, 1),
            "drained": not any(e.outbox for e in self.edges),
            "settle_s": round(settle_s, 1),
            "bench_cpu_s": round(cpu, 1),
            "central_cpu_s": None if central_cpu is None else round(central_cpu, 1),
            "bench_loop_lag_ms_p99": round(float(np.percentile(lags, 99)), 1) if lags else None,
        }

    async def _generate(self, edge: Edge, start: float) -> None:
        phase = edge.rng.uniform(0, 1)
        for i in range(int(self.args.seconds)):
            await asyncio.sleep(max(0.0, start + phase + i - time.time()))
            self.sent[edge.make_packet()] = edge.index

    async def _progress(self, start: float, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 10)
            acked = sum(len(e.acked) for e in self.edges)
            print(
                f"# t={time.time() - start:5.1f}s sent={len(self.sent)} acked={acked} "
                f"outbox={sum(len(e.outbox) for e in self.edges)} "
                f"connected={sum(e.connected for e in self.edges)}/{len(self.edges)} "
                f"deliveries={sum(len(e.received_seq) for e in self.edges)}",
                flush=True,
            )

    async def _restart(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        print(f"# t={self.args.restart_at:g}s: central killed (SIGKILL, whole tree)", flush=True)
        began = time.monotonic()
        await asyncio.to_thread(kill_tree, self.central)
        self.restarted = True
        log = self.central.log_path
        log.rename(log.with_name("qig-up.before-restart.log"))
        await asyncio.to_thread(self.central.start, 180)
        self.restart_down_s = round(time.monotonic() - began, 1)
        print(f"# central back after {self.restart_down_s} s", flush=True)


async def loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append((time.perf_counter() - began - 0.01) * 1000)


def tree_cpu(product: Product) -> float:
    """CPU seconds (user + system) of the product's live processes."""
    assert product.process is not None
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(product.process.pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def kill_tree(product: Product) -> None:
    """`kill -9` central: the supervisor and every process under it."""
    assert product.process is not None
    root = psutil.Process(product.process.pid)
    victims = [root, *root.children(recursive=True)]
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    product.process.wait(10)
    log = getattr(product, "_log", None)
    if log is not None:
        log.close()


# ---- central: its database, enrolment, its truth ----------------------------------------------
@contextlib.contextmanager
def fresh_database(services: bool) -> Iterator[dict[str, str]]:
    """Services mode: a PostgreSQL database of central's own, dropped afterwards."""
    if not services:
        yield {}
        return
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = f"qig_bench_federation_{os.getpid()}"
    drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield {"DATABASE_URL": url.rsplit("/", 1)[0] + "/" + name}
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(drop)


def pick_redis_db() -> int:
    """The highest-numbered empty Redis database among those live products use (2–15): the
    product flushes the one it gets, so take one nobody is using now."""
    import redis

    parts = urlsplit(os.environ["REDIS_URL"])
    for db in range(15, 1, -1):  # the database goes in the URL: it wins over a db= argument
        if redis.Redis.from_url(urlunsplit(parts._replace(path=f"/{db}"))).dbsize() == 0:
            return db
    raise RuntimeError("no empty Redis database among 2..15; pass --redis-db")


def manage_shell(central: Product, code: str, io: Path) -> None:
    env = {**central.env, "BENCH_FEDERATION_IO": str(io)}
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def enrol(central: Product, count: int, io: Path) -> tuple[list[str], list[Ed25519PrivateKey]]:
    keys = [packets.new_key() for _ in range(count)]
    wanted = [[f"bench-edge-{i:04d}", packets.public_text(k)] for i, k in enumerate(keys)]
    (io / "keys.json").write_text(json.dumps(wanted))
    manage_shell(central, ENROL, io)
    return json.loads((io / "nodes.json").read_text()), keys


def central_counters(central: Product) -> dict[str, int]:
    """GET /api/v1/nodes/ (every page): packets_in, duplicates, packets_rejected summed over the
    bench's nodes."""
    totals = {"packets_in": 0, "duplicates": 0, "packets_rejected": 0, "nodes": 0}
    with contextlib.closing(central.signin()) as client:
        url: str | None = "/api/v1/nodes/"
        while url:
            page = client.get(url)
            page.raise_for_status()
            body = page.json()
            for row in body["results"]:
                if row["name"].startswith("bench-edge-"):
                    totals["nodes"] += 1
                    for name in ("packets_in", "duplicates", "packets_rejected"):
                        totals[name] += int(row[name])
            url = body.get("next")
    return totals


# ---- the figures ---------------------------------------------------------------------------------
def quantile_ms(values: list[float] | np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def figures(run: Run, truth: dict[str, Any], counters: dict[str, int]) -> dict[str, Any]:
    edges, kpp = run.edges, run.kernels_per_packet
    sent_ids = set(run.sent)
    received: dict[str, float] = dict(truth["received"])
    acked: set[str] = set()
    for edge in edges:
        acked |= edge.acked & sent_ids

    # version → its packets, from central's anchor versions (a lost ack does not hide a merge);
    # one of central's batches merges many packets into one version of a kernel
    packet_index = {pid: i for i, pid in enumerate(run.sent)}
    pair_seq: list[int] = []
    pair_packet: list[int] = []
    in_version: dict[int, set[str]] = {}
    merges: dict[str, int] = {}
    for seq, pids in truth["versions"]:
        in_version[int(seq)] = set(pids)
        for pid in pids:
            if pid in packet_index:
                pair_seq.append(int(seq))
                pair_packet.append(packet_index[pid])
                merges[pid] = merges.get(pid, 0) + 1
    mismatched = sum(
        1
        for e in edges
        for pid, versions in e.ack_versions.items()
        for seq in versions.values()
        if pid not in in_version.get(seq, ())
    )

    # the time each packet was sent: the send central applied (its ts), else the last one
    n = len(run.sent)
    sent_at = np.full(n, np.nan)
    sender = np.full(n, -1, dtype=np.int64)
    for pid, i in packet_index.items():
        edge = edges[run.sent[pid]]
        sends = edge.sends.get(pid, [])
        if not sends:
            continue
        applied_ts = received.get(pid)
        match = [
            t for t in sends if applied_ts is not None and abs(round(t, 3) - applied_ts) < 6e-4
        ]
        sent_at[i] = match[0] if match else sends[-1]
        sender[i] = edge.index
    seqs = np.asarray(pair_seq, dtype=np.int64)
    owners = np.asarray(pair_packet, dtype=np.int64)
    seqs_of = np.bincount(owners, minlength=n)

    # a packet reaches another edge when that edge has every version the packet is merged into
    top = int(seqs.max()) if len(seqs) else 0
    latencies: list[np.ndarray] = []
    delivered = 0
    for edge in edges:
        got = np.frombuffer(edge.received_seq, dtype=np.int64)
        at = np.frombuffer(edge.received_at, dtype=np.float64)
        got, first = np.unique(got, return_index=True)
        keep = got <= top
        when = np.full(top + 1, np.nan)
        when[got[keep]] = at[first][keep]
        t = when[seqs]
        ok = ~np.isnan(t)
        last = np.full(n, -np.inf)
        np.maximum.at(last, owners[ok], t[ok])
        count = np.bincount(owners[ok], minlength=n)
        complete = (seqs_of > 0) & (count == seqs_of) & (sender != edge.index)
        complete &= ~np.isnan(sent_at)
        delivered += int(complete.sum())
        latencies.append((last[complete] - sent_at[complete]) * 1000)
    pairs = np.concatenate(latencies) if latencies else np.zeros(0)
    merged_packets = int((seqs_of > 0).sum())
    ack_ms = [ms for e in edges for ms in e.ack_ms]

    return {
        "edges": len(edges),
        "packets_sent": len(sent_ids),
        "packets_applied": counters["packets_in"],
        "lost": len(sent_ids) - counters["packets_in"],
        "duplicates_applied": counters["packets_in"] - len(acked),
        "duplicates_acked": counters["duplicates"],
        "max_packet_bytes": run.max_bytes,
        "p50_ms": quantile_ms(pairs, 50),
        "p99_ms": quantile_ms(pairs, 99),
        "max_ms": round(float(pairs.max()), 2) if len(pairs) else None,
        "rejected": counters["packets_rejected"],
        "acks_p50_ms": quantile_ms(ack_ms, 50),
        "acks_p99_ms": quantile_ms(ack_ms, 99),
        "reconnects": sum(max(0, e.welcomes - 1) for e in edges),
        "seconds": run.args.seconds,
        "kernels_per_packet": kpp,
        "restarted": run.restarted,
        "missing_ids": len(sent_ids - set(received)),
        "received_rows": len(truth["received"]),
        "merged_twice": sum(1 for c in merges.values() if c > kpp),
        "ack_version_mismatches": mismatched,
        "deliveries": delivered,
        "missed_deliveries": merged_packets * (len(edges) - 1) - delivered,
        "refused_by_central_at_edges": sum(len(e.refused) for e in edges),
        "duplicate_acks_at_edges": run.duplicate_acks,
        "outbox_left": sum(len(e.outbox) for e in edges),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--kernels-per-packet", type=int, default=1, choices=range(1, 4))
    parser.add_argument("--restart-at", type=float, default=None, metavar="SECONDS")
    parser.add_argument(
        "--no-applied", action="store_true", help="edges do not send `applied` for each anchor"
    )
    parser.add_argument("--redis-db", type=int, default=None, help="services mode: central's")
    args = parser.parse_args()

    services = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
    redis_db = None
    if services:
        redis_db = args.redis_db if args.redis_db is not None else pick_redis_db()
        os.environ["QIG_TEST_REDIS_DBS"] = f"{redis_db}-{redis_db}"  # before Product's import
    from tests.live.product import Product

    data_dir = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    io = data_dir / "bench"
    io.mkdir()
    context: dict[str, Any] = {"redis_db": redis_db, "applied_sent": not args.no_applied}
    measured: dict[str, Any] = {}
    with fresh_database(services) as database:
        settings = {
            "QIG_FEDERATION": "central",
            "QIG_BOOTSTRAP": "0",
            "QIG_AUTONOMOUS_LEARNING": "0",
            **database,
        }
        if not services:
            settings["REDIS_URL"] = ""  # no own_redis: embedded mode
        central = Product(data_dir / "central", **settings)
        if not services:
            central.env.pop("REDIS_URL", None)
            central.env.pop("DATABASE_URL", None)
        try:
            central.start(180)
            central.wait_for(lambda: central.get("/readyz").status_code == 200, 120, "readyz")
            began = time.monotonic()
            nodes, keys = enrol(central, args.edges, io)
            context["enrol_s"] = round(time.monotonic() - began, 1)
            run = Run(args, central)
            measured = asyncio.run(run.measure(nodes, keys))
            measured["restart_down_s"] = run.restart_down_s
            counters = central_counters(central)
            manage_shell(central, TRUTH, io)
            truth = json.loads((io / "truth.json").read_text())
        finally:
            if central.process is not None and central.process.poll() is None:
                central.stop()
            if services:  # its Redis database empty again, free for the next run
                import redis

                redis.Redis.from_url(central.env["REDIS_URL"]).flushdb()
    shutil.rmtree(data_dir, ignore_errors=True)  # kept when the run failed (central's log)
    result = {**figures(run, truth, counters), "mode": "services" if services else "embedded"}
    context["connection_errors"] = sorted({err for e in run.edges for err in e.errors})[:5]
    emit({**result, **measured}, context)


if __name__ == "__main__":
    main()
