"""One live product (`qig up --ollama-port`) with a tiny trained model, shared by the live
inference tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from constellation.engine.tiny import make_trained_model
from tests.live.product import Product, free_port

MAX_BATCH = 8
MAX_QUEUE = 4


class Serving(Product):
    ollama_port: int

    @property
    def ollama(self) -> str:
        return f"http://127.0.0.1:{self.ollama_port}"


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    data_dir = tmp_path_factory.mktemp("inference")
    make_trained_model(data_dir)
    server = Serving(
        data_dir, QIG_INFER_MAX_BATCH=str(MAX_BATCH), QIG_INFER_MAX_QUEUE=str(MAX_QUEUE)
    )
    server.ollama_port = free_port()
    server.start(120, "--ollama-port", str(server.ollama_port))
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()
