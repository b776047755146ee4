"""The real product for the benchmarks that measure it live: `qig up` (embedded mode) on a free
loopback port with a data directory of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def live_product(data_dir: Path, env: dict[str, str], timeout: float = 120) -> Iterator[str]:
    """`qig up` with `data_dir` as its data directory and `env` over this environment (services
    variables removed: embedded mode); yields its base URL and stops it afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    full.update(env, QIG_DATA_DIR=str(data_dir))
    qig = Path(sys.executable).parent / "qig"
    log_path = data_dir / "qig-up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(qig), "up", "--port", str(port), "--quiet"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"qig up exited: {log_path.read_text(errors='replace')}")
                try:
                    if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"qig up not ready in {timeout:.0f} s (log: {log_path})")
                time.sleep(0.25)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
