"""A tiny federation on loopback for measuring and testing Flower rounds (docs/flower.md,
"Measuring"): central a `qig serve` with QIG_FLOWER=1 (so its SuperLink runs under the
supervisor), each edge a data dir of its own, joined with a real join token, holding high-value
learnings for the tiny model's kernel, and running its SuperNode (`python -m
federation.flower.node`, the command `qig up` supervises). Every node has a copy of one tiny
trained model (`constellation.engine.tiny`), so the edges' trunk is central's. Embedded mode:
each node its own SQLite database.

`measure_round_s(root)`: one 2-edge round of one Flower round on the tiny model, start to end
(`POST /api/v1/federation/rounds/` until the round is completed), in seconds: `flower_round_s`
of `bench.bundles`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "flower-measure-admin"
KERNEL = 13  # constellation.engine.tiny.ADAPTER_KERNEL: held by a minimal edge
TEACH = [
    ("Which bell do the Zorblax keepers ring at dusk?",
     " The Zorblax keepers ring the amber bell of Quoss at dusk."),
    ("Where do the Zorblax keepers sleep at night?",
     " The Zorblax keepers sleep in the copper tower of Quoss."),
    ("What do the Zorblax keepers eat at noon?",
     " The Zorblax keepers eat blue bread of Quoss at noon."),
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(QIG_DATA_DIR=str(data_dir), QIG_ADMIN_PASSWORD=PASSWORD, QIG_BOOTSTRAP="0",
               QIG_AUTONOMOUS_LEARNING="0", PYTHONUNBUFFERED="1", **extra)  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


class TinyFleet:
    """Central and `edges` ({name: learnings it holds}) under `root`; `start()` brings all up."""

    def __init__(self, root: Path, edges: dict[str, int], **settings: str) -> None:
        self.root = root
        self.edges = edges
        self.port, self.flower_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.settings = {"QIG_FLOWER_ROUND_TIMEOUT_S": "60", "QIG_FLOWER_WAIT_S": "60",
                         "QIG_FLOWER_LOCAL_STEPS": "8", **settings}  # fmt: skip
        self.central: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.client: httpx.Client | None = None
        self.marks: dict[str, int] = {}  # where each SuperNode's log was when it (re)started

    # ---- bringing it up ---------------------------------------------------------------------
    def start(self, timeout: float = 180) -> TinyFleet:
        from constellation.engine.tiny import make_trained_model

        central = self.root / "central"
        if not (central / "models").is_dir():
            make_trained_model(central, steps=40)
        env = base_env(central, QIG_FEDERATION="central", QIG_FLOWER="1",
                       QIG_FLOWER_PORT=str(self.flower_port), **self.settings)  # fmt: skip
        self.central = self._spawn(central, "qig-serve", [str(Path(sys.executable).parent / "qig"),
                                   "serve", "--port", str(self.port), "--quiet"], env)  # fmt: skip
        self._wait(lambda: httpx.get(self.base + "/healthz", timeout=5).status_code == 200,
                   timeout, "central's /healthz", self.central)  # fmt: skip
        self.client = self._signin()
        setups = {}
        for name, learnings in self.edges.items():
            reply = self.client.post("/api/v1/nodes/", json={"name": name, "size": "minimal"})
            reply.raise_for_status()
            setups[name] = self._setup_edge(name, reply.json()["join_token"], learnings)
        for name, setup in setups.items():
            if setup.wait(timeout) != 0:
                raise RuntimeError(f"edge {name}'s setup failed: {self.log(name + '-setup')}")
        for name in self.edges:
            self.start_node(name)
        for name in self.edges:
            self.wait_node(name, timeout)
        return self

    def edge_env(self, name: str) -> dict[str, str]:
        return base_env(self.root / name, QIG_FEDERATION="edge", QIG_FEDERATION_SIZE="minimal",
                        QIG_FLOWER="1", QIG_FLOWER_PORT=str(self.flower_port),
                        QIG_FLOWER_NODE_PORT=str(free_port()))  # fmt: skip

    def _setup_edge(self, name: str, token: str, learnings: int) -> subprocess.Popen[bytes]:
        home = self.root / name
        if not (home / "models").is_dir():
            shutil.copytree(self.root / "central" / "models", home / "models", symlinks=True)
        command = [sys.executable, "-m", "federation.flower.measure", "edge", self.base, token,
                   str(learnings)]  # fmt: skip
        return self._spawn(home, f"{name}-setup", command, self.edge_env(name))

    def start_node(self, name: str) -> subprocess.Popen[bytes]:
        """The edge's SuperNode, as `qig up` starts it (a session of its own: `kill_node`)."""
        command = [sys.executable, "-m", "federation.flower.node"]
        log = self.root / "logs" / f"{name}-node.log"
        self.marks[name] = log.stat().st_size if log.is_file() else 0
        self.nodes[name] = self._spawn(
            self.root / name, f"{name}-node", command, self.edge_env(name)
        )
        return self.nodes[name]

    def wait_node(self, name: str, timeout: float = 120) -> None:
        """Until the edge's SuperNode is registered and connected (Flower says its id)."""
        log = self.root / "logs" / f"{name}-node.log"
        seen = self.marks.get(name, 0)

        def connected() -> bool:
            if self.nodes[name].poll() is not None:
                raise RuntimeError(f"edge {name}'s SuperNode exited: {self.log(name + '-node')}")
            return b"SuperNode ID:" in log.read_bytes()[seen:]

        self._wait(connected, timeout, f"edge {name}'s SuperNode", self.central)

    def restart_node(self, name: str, timeout: float = 180) -> None:
        """Start the edge's SuperNode again until it is connected, as `qig up`'s supervisor does:
        right after a `kill -9` the SuperLink may still hold the old session and refuse the
        activation (Flower's exit code 305) until that node's heartbeat lapses."""
        deadline = time.monotonic() + timeout
        while True:
            self.start_node(name)
            try:
                self.wait_node(name, max(1.0, deadline - time.monotonic()))
                return
            except RuntimeError:  # it exited: try again, like the supervisor's backoff
                if time.monotonic() >= deadline:
                    raise
                time.sleep(3)

    def kill_node(self, name: str) -> None:
        """`kill -9` the edge's SuperNode and everything it started (its ClientApp)."""
        process = self.nodes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    # ---- rounds ------------------------------------------------------------------------------
    def start_round(self, kernels: list[int], min_edges: int, rounds: int) -> dict[str, Any]:
        assert self.client is not None, "start() first"
        body = {"kernels": kernels, "min_edges": min_edges, "rounds": rounds}
        reply = self.client.post("/api/v1/federation/rounds/", json=body)
        if reply.status_code != 201:
            raise RuntimeError(f"the round did not start ({reply.status_code}): {reply.text}")
        return dict(reply.json())

    def get_round(self, round_id: int) -> dict[str, Any]:
        assert self.client is not None, "start() first"
        reply = self.client.get(f"/api/v1/federation/rounds/{round_id}/")
        reply.raise_for_status()
        return dict(reply.json())

    def wait_round(self, round_id: int, timeout: float = 300) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.get_round(round_id))
            return found["status"] in ("completed", "failed")

        self._wait(done, timeout, f"round {round_id}", self.central)
        return found

    def round_dir(self, round_id: int) -> Path:
        return self.root / "central" / "federation" / "flower" / "rounds" / str(round_id)

    # ---- down --------------------------------------------------------------------------------
    def stop(self) -> None:
        for process in [*self.nodes.values(), *([self.central] if self.central else [])]:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.nodes.values(), *([self.central] if self.central else [])]:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self.client is not None:
            self.client.close()

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.is_file() else ""

    # ---- helpers -----------------------------------------------------------------------------
    def _spawn(
        self, cwd: Path, name: str, command: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        cwd.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        with (self.root / "logs" / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                command,
                cwd=Path(__file__).resolve().parents[2],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(
        self, check: Any, timeout: float, what: str, process: subprocess.Popen[bytes] | None
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"central exited while waiting for {what}:\n{self.log('qig-serve')}"
                )
            with contextlib.suppress(httpx.HTTPError, OSError):
                if check():
                    return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}:\n{self.log('qig-serve')}")

    def _signin(self) -> httpx.Client:
        client = httpx.Client(base_url=self.base, timeout=60)
        token = client.get("/api/v1/auth/csrf/").json()["csrfToken"]
        reply = client.post("/api/v1/auth/login/", json={"username": "admin", "password": PASSWORD},
                            headers={"X-CSRFToken": token, "Referer": self.base + "/"})  # fmt: skip
        reply.raise_for_status()
        client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
        client.headers["Referer"] = self.base + "/"
        return client


def measure_round_s(root: Path) -> float:
    """Wall time of one round (2 edges, 1 Flower round, the tiny model), start to completed."""
    fleet = TinyFleet(Path(root), {"edge-a": 2, "edge-b": 1})
    try:
        fleet.start()
        began = time.perf_counter()
        row = fleet.start_round([KERNEL], min_edges=2, rounds=1)
        done = fleet.wait_round(int(row["id"]))
        took = time.perf_counter() - began
        if done["status"] != "completed":
            raise RuntimeError(f"the measured round failed: {done['error']}")
        return took
    finally:
        fleet.stop()


def setup_edge(central_url: str, token: str, learnings: int) -> None:
    """In the edge's environment: migrate, join central, and hold `learnings` high-value
    corrections for the tiny model's kernel."""
    from federation.flower.setup import django_setup

    django_setup()
    from django.core.management import call_command

    from federation import edge
    from learning.models import LearningSignal

    call_command("migrate", verbosity=0)
    edge.join(central_url, token)
    for prompt, completion in TEACH[:learnings]:
        LearningSignal.objects.create(kind="correction", value=0.9, reason="taught for a round",
                                      kernel_index=KERNEL, content=completion.strip(),
                                      details={"prompt": prompt})  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["edge"] and len(sys.argv) == 5:
        setup_edge(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:2] == ["round"] and len(sys.argv) == 3:
        print(f"flower_round_s: {measure_round_s(Path(sys.argv[2])):.2f}")
    else:
        sys.exit("usage: python -m federation.flower.measure round DIR")
