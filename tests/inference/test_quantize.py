"""`/api/create`'s quantize (issue 17, item 3): q8_0 makes a model served by the int8 trunk,
`/api/tags` and `/api/show` say so, anything else is a 400 naming what is accepted."""

from __future__ import annotations

import uuid

import httpx
import pytest

from constellation.engine import default_inference_dtype, dtype_level
from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MODEL = "qig-constellation:latest"


def post(live: Serving, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(live.base + path, timeout=60, **kwargs)  # type: ignore[arg-type]


def levels(live: Serving) -> dict[str, str]:
    models = httpx.get(live.base + "/api/tags").json()["models"]
    return {m["name"]: m["details"]["quantization_level"] for m in models}


def test_q8_0_makes_a_model_served_with_int8_weights_and_says_so(live: Serving) -> None:
    name, child = f"small-{uuid.uuid4().hex[:8]}:latest", f"kid-{uuid.uuid4().hex[:8]}:latest"
    made = post(live, "/api/create", json={"model": name, "from": MODEL, "quantize": "q8_0"})
    assert made.status_code == 200, made.text
    assert post(live, "/api/create", json={"model": child, "from": name}).status_code == 200
    plain = levels(live)[MODEL]
    assert plain == dtype_level(default_inference_dtype())  # the dtype it is served in
    assert levels(live)[name] == "Q8_0" and levels(live)[child] == "Q8_0"  # a base's holds
    assert (
        post(live, "/api/show", json={"model": name}).json()["details"]["quantization_level"]
        == "Q8_0"
    )
    body = {"prompt": "hello", "stream": False, "options": {"temperature": 0, "num_predict": 8}}
    answers = {
        m: post(live, "/api/generate", json={**body, "model": m}).json() for m in (name, MODEL)
    }
    for answer in answers.values():
        assert answer["done"] is True and answer["eval_count"] > 0, answer
    for m in (child, name):
        assert (
            httpx.request("DELETE", live.base + "/api/delete", json={"model": m}).status_code == 200
        )


def test_other_levels_are_refused_naming_the_accepted_one(live: Serving) -> None:
    for level in ("q4_K_M", "f16", 8):
        bad = post(live, "/api/create", json={"model": "x", "from": MODEL, "quantize": level})
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert "quantize" in error and "q8_0" in error, error
