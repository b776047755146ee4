"""`qig serve --port N`: the Ollama/OpenAI-compatible API alone, as a user starts it.

No dashboard (`/` answers like Ollama, the React app's routes are not served), no workers, and
the API answers from the trained model in the data dir. (`qig up --ollama-port` is covered by the
live server of `tests/inference/`, which every test there talks to.)
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from constellation.engine.tiny import make_trained_model
from tests.live.product import Product

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

MODEL = "qig-constellation:latest"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    data_dir = tmp_path_factory.mktemp("serve")
    make_trained_model(data_dir)
    running = Product(data_dir).start(command="serve")
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def test_it_serves_the_api_alone(served: Product) -> None:
    for method in ("GET", "HEAD"):
        root = httpx.request(method, served.base + "/")
        assert root.status_code == 200
        assert root.headers["content-type"].startswith("text/plain")
    assert served.get("/").text == "Ollama is running"  # not the React app's index.html
    page = served.get("/dashboard")
    assert page.status_code == 404 and "qig serve" in page.text
    names = {m["name"] for m in served.get("/api/tags").json()["models"]}
    assert MODEL in names
    assert served.get("/v1/models").json()["object"] == "list"
    commands = [" ".join(p.cmdline()) for p in served.descendants()]
    assert any("daphne" in c for c in commands) and not any("celery" in c for c in commands)
    assert "inference API only" in served.log()


def test_it_answers_from_the_trained_model(served: Product) -> None:
    body = {"model": MODEL, "prompt": "The socket module", "stream": False}
    answer = httpx.post(
        served.base + "/api/generate", json={**body, "options": {"num_predict": 8}}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["done"] is True and result["eval_count"] >= 1
    loaded = served.get("/api/ps").json()["models"]
    assert loaded and loaded[0]["context_length"] > 0
