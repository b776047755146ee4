"""Federation's settings (docs/federation.md, docs/configuration.md), star-imported by
qigcenter/settings.py."""

from __future__ import annotations

from qigcenter.env import ConfigError, env_float, env_int, env_str, env_url

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
# Update bundles (docs/federation.md, "Update bundles"). Central trains a kernel on the learnings
# edges sent once this many new ones arrived (0: only when an admin asks).
FEDERATION_BUNDLE_MIN_LEARNINGS = env_int("QIG_FEDERATION_BUNDLE_MIN_LEARNINGS", 3, minimum=0)
FEDERATION_BUNDLE_KEEP = 5  # bundle directories central keeps (an edge keeps its last two)
# An edge refuses a bundle whose files add up to more than this.
FEDERATION_BUNDLE_MAX_BYTES = env_int("QIG_FEDERATION_BUNDLE_MAX_BYTES", 512 * 2**20, minimum=1024)
# Central's merge: the current anchor counts as this much weight (tokens) against an update, at
# most FEDERATION_MAX_MASS however many updates it has absorbed (so anchors keep moving).
FEDERATION_PRIOR_WEIGHT = env_float("QIG_FEDERATION_PRIOR_WEIGHT", 100.0, minimum=0.0)
FEDERATION_MAX_MASS = env_float("QIG_FEDERATION_MAX_MASS", 10000.0, minimum=1.0)

# --- snapshots (docs/snapshots.md) ---
from pathlib import Path as _Path  # noqa: E402

from qigcenter.env import env_path as _env_path  # noqa: E402

# Where `qig snapshot export` writes and beat exports (default <data dir>/snapshots); when set, a
# node starting with snapshots there imports the newest once.
SNAPSHOT_DIR = _env_path("QIG_SNAPSHOT_DIR", _Path()) if env_str("QIG_SNAPSHOT_DIR") else None
# Beat exports a snapshot every this many seconds when the patterns changed (0: never).
SNAPSHOT_EVERY_S = env_int("QIG_SNAPSHOT_EVERY_S", 0, minimum=0)
# The snapshot task's module: workers and beat import it (it adds beat's entry when scheduled).
CELERY_IMPORTS = (*globals().get("CELERY_IMPORTS", ()), "federation.snapshot_tasks")

# --- flower (federated adapter averaging on Flower, docs/flower.md) ---
from qigcenter.env import env_bool as _env_bool  # noqa: E402
from qigcenter.env import env_host as _env_host  # noqa: E402
from qigcenter.env import env_list as _env_list  # noqa: E402

# 1 on central: `qig up` runs Flower's SuperLink; on an edge: its SuperNode (joined edges only).
FLOWER = _env_bool("QIG_FLOWER", False)
# Central's SuperLink: the address it binds (default QIG_HOST) and its one HTTPS port; edges'
# SuperNodes reach its Fleet API there (its Control and Runtime APIs answer loopback only).
FLOWER_HOST = _env_host("QIG_FLOWER_HOST", env_str("QIG_HOST", "127.0.0.1"))
FLOWER_PORT = env_int("QIG_FLOWER_PORT", 9092, minimum=1, maximum=65535)
# More names (host names, IP addresses) central's SuperLink certificate is valid for.
FLOWER_TLS_NAMES = _env_list("QIG_FLOWER_TLS_NAMES", [])
# An edge: central's SuperLink as host:port (default: QIG_CENTRAL_URL's host, QIG_FLOWER_PORT).
FLOWER_SUPERLINK = env_str("QIG_FLOWER_SUPERLINK", "")
# An edge: the loopback port of its SuperNode's ClientApp API (two on one machine need two).
FLOWER_NODE_PORT = env_int("QIG_FLOWER_NODE_PORT", 9094, minimum=1, maximum=65535)
# A Flower round waits this long for the edges' replies; a missing one counts as dropped out.
FLOWER_ROUND_TIMEOUT_S = env_float("QIG_FLOWER_ROUND_TIMEOUT_S", 600.0, minimum=1.0)
# A start waits this long for `min_edges` edges to be connected, then fails saying so.
FLOWER_WAIT_S = env_float("QIG_FLOWER_WAIT_S", 300.0, minimum=1.0)
# The fraction of the connected edges each round asks (never fewer than the start's min_edges).
FLOWER_FRACTION = env_float("QIG_FLOWER_FRACTION", 1.0, minimum=0.0)
if not 0.0 < FLOWER_FRACTION <= 1.0:
    raise ConfigError("QIG_FLOWER_FRACTION", str(FLOWER_FRACTION), "a fraction in (0, 1]")
# Training steps an edge takes on a kernel's B per round.
FLOWER_LOCAL_STEPS = env_int("QIG_FLOWER_LOCAL_STEPS", 20, minimum=1, maximum=100_000)
