"""The Flower processes `qig up` / `qig serve` supervise (docs/flower.md, "Processes"), restarted
with backoff like the federation client when they exit: central's SuperLink, an edge's SuperNode.
Both only with QIG_FLOWER=1. Imports neither Django nor Flower (the supervisor reads env alone)."""

from __future__ import annotations

from collections.abc import Mapping

from qigcenter.env import env_bool


def children(python: str, env: Mapping[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, argv, env) of each Flower process this node runs."""
    if not env_bool("QIG_FLOWER", False, environ=env):
        return []
    role = env.get("QIG_FEDERATION", "").strip().lower()
    if role == "central":
        return [("flower-superlink", [python, "-m", "federation.flower.link"], dict(env))]
    if role == "edge":
        return [("flower-supernode", [python, "-m", "federation.flower.node"], dict(env))]
    return []
