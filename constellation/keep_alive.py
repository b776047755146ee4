"""Ollama's `keep_alive`: how long a loaded model stays loaded after a request."""

from __future__ import annotations

import re
import time
from typing import Any

from constellation.errors import BadRequest

DEFAULT_KEEP_ALIVE_S = 300.0
FOREVER = None  # an expiry of None: never unloaded


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to stay loaded after a request (None = forever). Number = seconds, string =
    duration ("5m", "1h30m", "10s", "-1"), negative = forever; missing = 5 minutes."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, bool):
        raise BadRequest("keep_alive: expected a number or a duration string")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration(value)
    else:
        raise BadRequest("keep_alive: expected a number or a duration string")
    return None if seconds < 0 else seconds


def _duration(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(-?\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace("+", ""):
        raise BadRequest(f"keep_alive: invalid duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def expiry(keep_alive: float | None) -> float | None:
    return None if keep_alive is None else time.time() + keep_alive
