"""Basin-sync packets (docs/federation.md, DESIGN §7): their shape, canonical body, Ed25519
signatures and strict validation. Pure: no Django, no database; the consumer and the edge client
put the node table and the clock around it.

A packet, as it travels (JSON, at most `MAX_PACKET_BYTES` encoded):

    {"v": 1, "type": "basin", "node": "<node uuid>", "id": "<packet uuid>", "ts": 1765000000.25,
     "kernels": {"57": {"anchor": [64 floats on the simplex], "weight": 120.0}},
     "phi": 0.41, "kappa": 63.2, "regime": "geometric",
     "delta": {"patterns": ["3f2a…"], "reinforced": [57], "weakened": [], "vocabulary": []},
     "constraints": {"failed": ["9c1d…"], "low_phi": [132]},
     "sig": "<base64 Ed25519 signature of the canonical body>"}

The canonical body is the packet without `sig`, as sorted, compact, ASCII JSON (`canonical`); the
signature covers `DOMAIN` + that body, so a signature made for another message type (the hello,
an anchor broadcast) never verifies as a packet. `ts` is the send time: the edge signs again, with
a fresh `ts` and the same packet id, each time it sends, so a packet kept in the outbox while
central was down for hours is not stale when it finally goes, and a captured packet replayed
later is (and its id is spent anyway).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PROTOCOL_VERSION = 1
MAX_PACKET_BYTES = 4096
BASIN_DIM = 64
N_KERNELS = 240
SIMPLEX_TOL = 1e-5  # anchors travel rounded to 9 decimals: their sum is 1 within this
ANCHOR_DECIMALS = 9
MAX_WEIGHT = 1e9
MAX_LIST = 64  # entries in each delta / constraint list
MAX_HASH_CHARS = 64
REGIMES = ("linear", "geometric", "breakdown", "unknown")
DOMAIN = {
    "basin": b"qig-federation-v1 basin\n",
    "hello": b"qig-federation-v1 hello\n",
    "anchor": b"qig-federation-v1 anchor\n",
    "learnings": b"qig-federation-v1 learnings\n",  # federation/learnings.py
    "bundle": b"qig-federation-v1 bundle\n",  # an update bundle's manifest (federation/bundles.py)
    "fetch": b"qig-federation-v1 fetch\n",  # an edge's bundle download (federation/bundle_api.py)
}


class Rejected(ValueError):
    """A packet refused; `reason` is one of the short reasons counted per node (`REASONS`),
    `detail` says exactly what was wrong."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


REASONS = (
    "malformed",
    "oversized",
    "unknown node",
    "revoked node",
    "bad signature",
    "stale",
    "not on the simplex",
    "wrong dimension",
    "not finite",
    "kernel not held",
    "wrong protocol version",
)


# ---- keys and signatures ------------------------------------------------------------------------
def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def load_private(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as base64 of its 32 raw bytes (what the node table keeps)."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key (base64 of 32 bytes): {exc}") from exc


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the message without `sig`, sorted and compact."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sign(body: dict[str, Any], key: Ed25519PrivateKey, kind: str = "basin") -> dict[str, Any]:
    """`body` with its `sig` (base64) for message type `kind`."""
    signature = key.sign(DOMAIN[kind] + canonical(body))
    return {**{k: v for k, v in body.items() if k != "sig"}, "sig": _b64(signature)}


def verify(body: Mapping[str, Any], public: Ed25519PublicKey, kind: str = "basin") -> None:
    """Raise Rejected('bad signature') unless `body["sig"]` signs it for `kind`."""
    sig = body.get("sig")
    if not isinstance(sig, str):
        raise Rejected("bad signature", "no signature")
    try:
        signed_bytes = DOMAIN[kind] + canonical(body)
    except ValueError:  # NaN or infinity (JSON's 1e999): no canonical form, nothing to verify
        raise Rejected("not finite", "the message holds NaN or an infinite number") from None
    try:
        public.verify(base64.b64decode(sig, validate=True), signed_bytes)
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise Rejected("bad signature", "the signature does not match the body") from exc


def encoded(message: Mapping[str, Any]) -> str:
    """The wire form (compact JSON); its length in bytes is what `MAX_PACKET_BYTES` limits."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# ---- building ---------------------------------------------------------------------------------
def wire_anchor(anchor: Iterable[float]) -> list[float]:
    """An anchor as it travels: rounded to `ANCHOR_DECIMALS` (64 × ~11 characters)."""
    return [round(float(v), ANCHOR_DECIMALS) for v in anchor]


def basin_body(
    node: str,
    kernels: Mapping[int, tuple[Iterable[float], float]],
    *,
    packet_id: str | None = None,
    phi: float | None = None,
    kappa: float | None = None,
    regime: str = "unknown",
    delta: Mapping[str, list[Any]] | None = None,
    constraints: Mapping[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """An unsigned basin packet (no `ts`, no `sig`: `stamp_and_sign` adds them when it goes)."""
    return {
        "v": PROTOCOL_VERSION,
        "type": "basin",
        "node": node,
        "id": packet_id or str(uuid.uuid4()),
        "kernels": {
            str(k): {"anchor": wire_anchor(anchor), "weight": round(float(weight), 6)}
            for k, (anchor, weight) in sorted(kernels.items())
        },
        "phi": None if phi is None else round(float(phi), 6),
        "kappa": None if kappa is None else round(float(kappa), 6),
        "regime": regime,
        "delta": {k: list(v)[:MAX_LIST] for k, v in (delta or {}).items()},
        "constraints": {k: list(v)[:MAX_LIST] for k, v in (constraints or {}).items()},
    }


def hello(node: str, applied: int, key: Ed25519PrivateKey, now: float) -> str:
    """A connection's first message, signed: the node, the newest version it applied (central
    sends what came after), a fresh nonce (a hello is good once) and the time."""
    body = {
        "type": "hello",
        "node": node,
        "ts": round(now, 3),
        "nonce": uuid.uuid4().hex,
        "applied": applied,
    }
    return encoded(sign(body, key, "hello"))


def is_uuid(text: object) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


def stamp_and_sign(body: Mapping[str, Any], key: Ed25519PrivateKey, now: float) -> dict[str, Any]:
    return sign({**body, "ts": round(now, 3)}, key, "basin")


MAX_LEARNINGS_BYTES = 65536  # a sleep packet (federation/learnings.py) on the wire


def learnings_wire(body: Mapping[str, Any], key: Ed25519PrivateKey, now: float) -> str:
    """A sleep packet as it goes: stamped, signed with the "learnings" domain, wrapped."""
    signed = sign({**body, "ts": round(now, 3)}, key, "learnings")
    return encoded({"type": "learnings", "packet": signed})


SIGNED_OVERHEAD = (
    len('{"type":"packet","packet":}') + len(',"ts":1765000000.123') + len(',"sig":""') + 88
)  # the wrapper, the stamp, and a base64 Ed25519 signature (64 bytes)


def wire_size(body: Mapping[str, Any]) -> int:
    """The bytes `body` takes on the wire once stamped, signed and wrapped."""
    return len(encoded(body)) + SIGNED_OVERHEAD


def pack(
    node: str,
    kernels: Mapping[int, tuple[Iterable[float], float]],
    *,
    phi: float | None = None,
    delta: Mapping[str, list[Any]] | None = None,
    constraints: Mapping[str, list[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Unsigned packets carrying all of it, each under `MAX_PACKET_BYTES` on the wire: kernel
    updates `per_packet` at a time, then the delta and constraints entries filled into packets
    of their own until the next entry would not fit. Strings longer than `MAX_HASH_CHARS` and
    entries beyond `MAX_LIST` per list are dropped (central would refuse them)."""
    bodies = [basin_body(node, group, phi=phi) for group in split_kernels(kernels) if group]
    entries = [
        (group, key, item)
        for group, lists in (("delta", delta or {}), ("constraints", constraints or {}))
        for key, items in lists.items()
        for item in list(items)[:MAX_LIST]
        if not (isinstance(item, str) and len(item) > MAX_HASH_CHARS)
    ]
    current: dict[str, Any] | None = None
    for group, key, item in entries:
        if current is not None:
            current[group].setdefault(key, []).append(item)
            if wire_size(current) <= MAX_PACKET_BYTES:
                continue
            current[group][key].pop()
            if not current[group][key]:
                del current[group][key]
            bodies.append(current)
        current = basin_body(node, {}, phi=phi)
        current[group][key] = [item]
    if current is not None:
        bodies.append(current)
    for body in bodies:
        assert wire_size(body) <= MAX_PACKET_BYTES, f"packet of {wire_size(body)} bytes"
    return bodies


def split_kernels(
    kernels: Mapping[int, tuple[Iterable[float], float]], per_packet: int = 3
) -> list[dict[int, tuple[list[float], float]]]:
    """Kernel updates in groups small enough that each packet stays under `MAX_PACKET_BYTES`
    (one anchor is about 750 bytes on the wire; 3 with the rest stay under 3 KB)."""
    items = [(k, (list(a), float(w))) for k, (a, w) in sorted(kernels.items())]
    return [dict(items[i : i + per_packet]) for i in range(0, len(items), per_packet)] or [{}]


# ---- validation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Update:
    kernel: int
    anchor: list[float]
    weight: float


@dataclass(frozen=True)
class Packet:
    node: str
    id: str
    ts: float
    updates: tuple[Update, ...]
    body: dict[str, Any]


def parse(raw: str | bytes, limit: int = MAX_PACKET_BYTES) -> dict[str, Any]:
    """The JSON object of a message of at most `limit` bytes (Rejected: oversized, malformed)."""
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > limit:
        raise Rejected("oversized", f"{size} bytes, the limit is {limit}")
    try:
        message = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise Rejected("malformed", "not a JSON object")
    return message


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def check_body(
    message: Mapping[str, Any],
    public: Ed25519PublicKey,
    *,
    now: float,
    window_s: float,
    held: frozenset[int] | None = None,
) -> Packet:
    """Validate a basin packet from a known node whose public key is `public`: shape, signature,
    clock window, then every kernel update (dimension, finiteness, simplex, held by the node).
    Raises Rejected with the first reason found."""
    body = message
    if body.get("v") != PROTOCOL_VERSION:
        raise Rejected("wrong protocol version", f"v={body.get('v')!r}, this node speaks 1")
    _fields(body)
    verify(body, public, "basin")
    ts = float(body["ts"])
    if abs(now - ts) > window_s:
        raise Rejected(
            "stale", f"sent at {ts:.3f}, {now - ts:+.1f} s from now (window {window_s:g} s)"
        )
    updates = tuple(_update(k, v, held) for k, v in body["kernels"].items())
    return Packet(str(body["node"]), str(body["id"]), ts, updates, dict(body))


def _fields(body: Mapping[str, Any]) -> None:
    expect: dict[str, type | tuple[type, ...]] = {
        "type": str,
        "node": str,
        "id": str,
        "ts": (int, float),
        "kernels": dict,
        "delta": dict,
        "constraints": dict,
        "regime": str,
        "sig": str,
    }
    for name, kind in expect.items():
        value = body.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Rejected("malformed", f"{name!r} is missing or not a {_kind_name(kind)}")
    if body["type"] != "basin":
        raise Rejected("malformed", f"type {body['type']!r} is not 'basin'")
    try:
        uuid.UUID(body["id"])
    except ValueError:
        raise Rejected("malformed", "'id' is not a UUID") from None
    if not math.isfinite(float(body["ts"])):
        raise Rejected("not finite", "'ts' is not a finite number")
    for name in ("phi", "kappa"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise Rejected("malformed", f"{name!r} is not a number")
        if value is not None and not math.isfinite(value):
            raise Rejected("not finite", f"{name!r} is not finite")
    if body["regime"] not in REGIMES:
        raise Rejected("malformed", f"regime {body['regime']!r} is not one of {REGIMES}")
    for group in ("delta", "constraints"):
        for key, items in body[group].items():
            if not isinstance(items, list) or len(items) > MAX_LIST:
                raise Rejected("malformed", f"{group}.{key} is not a list of ≤ {MAX_LIST}")
            for item in items:
                if isinstance(item, str) and len(item) > MAX_HASH_CHARS:
                    raise Rejected(
                        "malformed", f"{group}.{key}: an entry over {MAX_HASH_CHARS} chars"
                    )
    if (
        not body["kernels"]
        and not any(body["delta"].values())
        and not any(body["constraints"].values())
    ):
        raise Rejected("malformed", "the packet carries nothing (no kernels, delta or constraints)")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return (
        "number"
        if isinstance(kind, tuple)
        else {"str": "string", "dict": "object"}.get(kind.__name__, kind.__name__)
    )


def _update(key: str, value: Any, held: frozenset[int] | None) -> Update:
    try:
        kernel = int(key)
    except ValueError:
        raise Rejected("malformed", f"kernel key {key!r} is not an integer") from None
    if str(kernel) != key or not 0 <= kernel < N_KERNELS:
        raise Rejected("malformed", f"kernel {key!r} is not one of 0..{N_KERNELS - 1}")
    if held is not None and kernel not in held:
        raise Rejected("kernel not held", f"kernel {kernel} is not among this node's kernels")
    if not isinstance(value, dict):
        raise Rejected("malformed", f"kernel {kernel}: not an object")
    anchor, weight = value.get("anchor"), value.get("weight")
    if not isinstance(anchor, list):
        raise Rejected("malformed", f"kernel {kernel}: 'anchor' is not a list")
    if len(anchor) != BASIN_DIM:
        raise Rejected(
            "wrong dimension", f"kernel {kernel}: {len(anchor)} values, need {BASIN_DIM}"
        )
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in anchor):
        raise Rejected("malformed", f"kernel {kernel}: the anchor holds a non-number")
    if not all(math.isfinite(v) for v in anchor):
        raise Rejected("not finite", f"kernel {kernel}: the anchor holds NaN or infinity")
    if min(anchor) < 0 or abs(math.fsum(anchor) - 1.0) > SIMPLEX_TOL:
        raise Rejected(
            "not on the simplex",
            f"kernel {kernel}: min {min(anchor):.3g}, sum {math.fsum(anchor):.9f} (need ≥ 0, 1)",
        )
    if not isinstance(weight, int | float) or isinstance(weight, bool):
        raise Rejected("malformed", f"kernel {kernel}: 'weight' is not a number")
    if not math.isfinite(weight) or not 0 < weight <= MAX_WEIGHT:
        raise Rejected(
            "not finite", f"kernel {kernel}: weight {weight!r} is not in (0, {MAX_WEIGHT:g}]"
        )
    return Update(kernel, [float(v) for v in anchor], float(weight))
