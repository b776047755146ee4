"""The official `ollama` npm client (ollama-js) against the live server: a Node script
(tests/clients/ollama_js.mjs, the package from frontend/node_modules) makes every call and
checks what the client hands back; this test runs it and reads its summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.inference.conftest import Serving

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "clients" / "ollama_js.mjs"
MODEL = "qig-constellation:latest"


def test_ollama_js_lists_chats_generates_embeds_shows_and_ps(live: Serving) -> None:
    node = shutil.which("node")
    assert node, "node is not on PATH (`make install` needs it too)"
    assert (ROOT / "frontend/node_modules/ollama/package.json").is_file(), "run `make install`"
    done = subprocess.run(
        [node, str(SCRIPT)],
        env={**os.environ, "QIG_OLLAMA_HOST": live.base, "QIG_MODEL": MODEL},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert MODEL in out["list"]["models"]
    assert out["chat"]["streamed"] == out["chat"]["content"] and out["chat"]["parts"] > 1
    assert isinstance(json.loads(out["json"]["content"]), dict | list)
    assert out["embed"] == {"count": 2, "dimensions": 64}
    assert out["show"]["context_length"] > 0 and "completion" in out["show"]["capabilities"]
    assert MODEL in out["ps"]["models"]
    assert out["error"]["status_code"] == 404 and "not found" in out["error"]["message"]
