"""The real product (`qig up`, this run's mode): an upload made before any coordizer exists waits,
then a coordizer job completes and the upload is chunked and routed without anyone asking — the
beat watchdog is slowed down so that the coordizer job's own request is what does it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.live.product import Product, next_message
from tests.uploads import small

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]


def _headers(product: Product, client: httpx.Client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"], "Referer": product.base + "/"}


async def test_a_pending_upload_is_processed_when_the_coordizer_arrives(
    tmp_path: Path, own_database: dict[str, str]
) -> None:
    env = {"QIG_JOB_WATCHDOG_S": "600", "QIG_TRAIN_THREADS": "1", **own_database}
    product = Product(tmp_path / "data", **env).start()
    try:
        client = product.signin()
        text = "\n\n".join(small.corpus()[:15]).encode()
        response = client.post(
            "/api/v1/uploads/",
            files=[("file", ("notes.md", text, "text/markdown"))],
            data={"domain": "MEMORY"},
            headers=_headers(product, client),
        )
        assert response.status_code == 201, response.text
        upload = response.json()["results"][0]["upload"]
        assert upload["status"] == "pending"
        assert upload["status_detail"] == "waiting for the coordizer"

        ws = await product.telemetry(client)
        try:
            await ws.send('{"type": "subscribe", "topics": ["learning"]}')
            await next_message(ws, lambda m: m["type"] == "subscribed", 10)
            job = client.post(
                "/api/v1/jobs/",
                json={
                    "kind": "coordizer",
                    "datasets": [upload["id"]],
                    "hyperparameters": {"vocab_size": 512},
                },
                headers=_headers(product, client),
            )
            assert job.status_code == 201, job.text
            message = await next_message(
                ws,
                lambda m: (
                    m["type"] == "event"
                    and m["payload"].get("kind") == "upload.status"
                    and m["payload"]["upload"]["status"] == "ready"
                ),
                180,
            )
        finally:
            await ws.close()
        ready = message["payload"]["upload"]
        assert ready["id"] == upload["id"] and ready["n_chunks"] >= 1
        assert [r["role"] for r in ready["routed"]] == ["MEMORY", "MEMORY"]
        detail = client.get(f"/api/v1/uploads/{upload['id']}/").json()
        assert detail["status"] == "ready" and detail["routed"] == ready["routed"]
        chunks = client.get(f"/api/v1/uploads/{upload['id']}/chunks/").json()
        assert chunks["count"] == ready["n_chunks"] and len(chunks["results"][0]["basin"]) == 64
    finally:
        product.stop()
