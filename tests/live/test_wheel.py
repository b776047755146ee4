"""The laptop edge installs with one command (issue 13 item 1): `make wheel` builds a wheel that
carries the built dashboard; `pip install` of it into a fresh virtualenv, then `qig serve --size
minimal` run from outside the checkout (no Node, no services, no PYTHONPATH) joins a central
started from the checkout and stays online. Embedded pass only: the edge uses no services."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live.product import ROOT, Product, free_port

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")), reason="runs once, in the embedded pass"
    ),
]


@pytest.fixture(scope="module")
def wheel() -> Path:
    subprocess.run(["make", "wheel"], cwd=ROOT, check=True, capture_output=True)
    [built] = sorted((ROOT / "dist").glob("qig_control_center-*.whl"))
    return built


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    product = Product(tmp_path_factory.mktemp("central"), QIG_FEDERATION="central").start(120)
    yield product
    product.stop()


@pytest.mark.timeout(900)
def test_the_wheel_installs_alone_and_runs_a_joined_edge(
    wheel: Path, central: Product, tmp_path: Path
) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "qigcenter/frontend_dist/index.html" in names  # the dashboard rides in the wheel
    assert any(n.startswith("federation/migrations/") for n in names)
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    pip = subprocess.run(
        [str(home / "bin" / "pip"), "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]

    admin = central.signin()
    admin.headers["X-CSRFToken"] = admin.cookies["csrftoken"]
    added = admin.post("/api/v1/nodes/", json={"name": "laptop", "size": "minimal"})
    assert added.status_code == 201, added.text
    port = free_port()
    outside = tmp_path / "elsewhere"  # not the checkout: nothing of it on the path
    outside.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DATABASE_URL", "REDIS_URL", "QIG_DATA_DIR", "VIRTUAL_ENV")
    }
    env.update(
        QIG_FEDERATION="edge",
        QIG_CENTRAL_URL=central.base,
        QIG_JOIN_TOKEN=added.json()["join_token"],
        QIG_DATA_DIR=str(tmp_path / "edge-data"),
        QIG_BOOTSTRAP="0",
        QIG_FEDERATION_HEARTBEAT_S="1",
    )
    log = (tmp_path / "edge.log").open("wb")
    edge = subprocess.Popen(
        [str(home / "bin" / "qig"), "serve", "--size", "minimal", "--port", str(port)],
        cwd=outside,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        where = subprocess.run(
            [str(home / "bin" / "python"), "-c", "import qigcenter; print(qigcenter.__file__)"],
            cwd=outside, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert where.stdout.startswith(str(home)), where.stdout  # the installed copy
        assert not where.stdout.startswith(str(ROOT))
        central.wait_for(
            lambda: any(
                n["name"] == "laptop" and n["status"] == "online"
                for n in admin.get("/api/v1/nodes/").json()["results"]
            ),
            120,
            f"the wheel's edge online on central:\n{(tmp_path / 'edge.log').read_text()}",
        )
        central.wait_for(  # the edge's own web process (its federation client may be quicker)
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200,
            120,
            "the edge's healthz",
        )
        version = httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=10)
        assert version.status_code == 200 and "version" in version.json()
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "Ollama is running"
    finally:
        edge.terminate()
        edge.wait(60)
        log.close()
    assert edge.returncode is not None
    print("edge log tail:", (tmp_path / "edge.log").read_text()[-500:], file=sys.stderr)
