"""Federation's settings (docs/federation.md, docs/configuration.md), star-imported by
qigcenter/settings.py."""

from __future__ import annotations

from qigcenter.env import ConfigError, env_float, env_str, env_url

# Unset: this node runs alone.
FEDERATION = env_str("QIG_FEDERATION", "").strip().lower()
if FEDERATION not in ("", "central", "edge"):
    raise ConfigError("QIG_FEDERATION", FEDERATION, "central, edge, or unset (alone)")
# An edge holds and syncs its size's kernels (minimal 3, medium 12, full 240); central is full.
FEDERATION_SIZE = env_str("QIG_FEDERATION_SIZE", "full" if FEDERATION != "edge" else "minimal")
if FEDERATION_SIZE not in ("minimal", "medium", "full"):
    raise ConfigError("QIG_FEDERATION_SIZE", FEDERATION_SIZE, "minimal, medium or full")
if FEDERATION == "central" and FEDERATION_SIZE != "full":
    raise ConfigError("QIG_FEDERATION_SIZE", FEDERATION_SIZE, "full on a central node")
# An edge joins its central at start when not joined yet (else `qig federation join URL TOKEN`).
FEDERATION_CENTRAL_URL = env_url("QIG_CENTRAL_URL", ("http", "https"))
FEDERATION_JOIN_TOKEN = env_str("QIG_JOIN_TOKEN", "")
# This node's public base URL, printed in the join command central shows (default: its bind).
FEDERATION_PUBLIC_URL = env_url("QIG_PUBLIC_URL", ("http", "https"))
# A packet's send time may differ from the receiver's clock by at most this much.
FEDERATION_CLOCK_WINDOW_S = env_float("QIG_FEDERATION_CLOCK_WINDOW_S", 300.0, minimum=1.0)
FEDERATION_JOIN_TOKEN_TTL_S = env_float("QIG_FEDERATION_JOIN_TOKEN_TTL_S", 3600.0, minimum=10.0)
FEDERATION_HEARTBEAT_S = env_float("QIG_FEDERATION_HEARTBEAT_S", 10.0, minimum=0.5)
# An edge moves its anchor this far (0–1) along the geodesic toward central's merged anchor.
FEDERATION_FOLLOW = env_float("QIG_FEDERATION_FOLLOW", 1.0, minimum=0.0)
if FEDERATION_FOLLOW > 1.0:
    raise ConfigError("QIG_FEDERATION_FOLLOW", str(FEDERATION_FOLLOW), "a fraction in [0, 1]")
# Central's merge: the current anchor counts as this much weight (tokens) against an update, at
# most FEDERATION_MAX_MASS however many updates it has absorbed (so anchors keep moving).
FEDERATION_PRIOR_WEIGHT = env_float("QIG_FEDERATION_PRIOR_WEIGHT", 100.0, minimum=0.0)
FEDERATION_MAX_MASS = env_float("QIG_FEDERATION_MAX_MASS", 10000.0, minimum=1.0)
