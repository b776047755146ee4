"""How an edge's SuperNode key reaches central's SuperLink allow-list (docs/flower.md,
"Authentication").

The edge sends `POST /api/v1/federation/flower/keys/` with its SuperNode public key, signed with
the Ed25519 node key it joined with (the same key that signs its basin packets), stamped and with
a one-time nonce. Central checks the node is on its allow-list and not revoked, the signature,
the clock window and the nonce, then registers the key with its SuperLink (`flwr supernode
register`) and answers, signed with its own key: the Flower node id and the CA certificate of
the SuperLink's TLS. Only registered keys' SuperNodes are let in by Flower (SuperNode
authentication); a revoked node's key is unregistered before the next round starts, and the
ServerApp asks only the SuperNodes of nodes still on the allow-list.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from federation import packets
from federation.flower import pki

KEY_DOMAIN = b"qig-flower-v1 supernode-key\n"
REPLY_DOMAIN = b"qig-flower-v1 supernode-key-reply\n"
ENDPOINT = "/api/v1/federation/flower/keys/"


class Refused(ValueError):
    """The request is refused; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _sign(body: dict[str, Any], key: Ed25519PrivateKey, domain: bytes) -> dict[str, Any]:
    signature = key.sign(domain + packets.canonical(body))
    return {**body, "sig": base64.b64encode(signature).decode("ascii")}


def _verify(body: dict[str, Any], public: Ed25519PublicKey, domain: bytes) -> bool:
    sig = body.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public.verify(base64.b64decode(sig, validate=True), domain + packets.canonical(body))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# ---- the edge ---------------------------------------------------------------------------------
def request(node_uuid: str, public_key_line: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    body = {"node": node_uuid, "public_key": public_key_line, "ts": round(time.time(), 3),
            "nonce": uuid.uuid4().hex}  # fmt: skip
    return _sign(body, key, KEY_DOMAIN)


def read_reply(reply: Any, node_uuid: str, central_key: str) -> dict[str, Any]:
    """Central's answer, checked: signed by central's key (the one the edge joined), for this
    node, with a CA certificate. ValueError says what is wrong."""
    if not isinstance(reply, dict):
        raise ValueError("central's answer is not a JSON object")
    if not _verify(reply, packets.load_public(central_key), REPLY_DOMAIN):
        raise ValueError("central's answer is not signed by the central this edge joined")
    if reply.get("node") != node_uuid:
        raise ValueError("central's answer is for another node")
    pki.check_ca(str(reply.get("ca", "")))
    if not str(reply.get("flower_node_id", "")).isdigit():
        raise ValueError("central's answer has no Flower node id")
    return reply


# ---- central ----------------------------------------------------------------------------------
def enrol(message: Any, now: float | None = None) -> dict[str, Any]:
    """Check an edge's request and register its key with the SuperLink; the signed answer.
    `Refused` (400, 403, 409, 503) says why not."""
    from django.core.cache import cache

    from federation import central
    from federation.flower import link
    from federation.flower.models import FlowerKey

    if settings.FEDERATION != "central" or not settings.FLOWER:
        raise Refused(
            404, "this node runs no Flower SuperLink (QIG_FEDERATION=central, QIG_FLOWER=1)"
        )
    if not isinstance(message, dict) or set(message) != {
        "node",
        "public_key",
        "ts",
        "nonce",
        "sig",
    }:
        raise Refused(400, "a JSON object of exactly node, public_key, ts, nonce and sig")
    try:
        node = central.authenticate(str(message["node"]))
    except packets.Rejected as exc:
        raise Refused(403, str(exc)) from None
    if not _verify(message, packets.load_public(node.public_key), KEY_DOMAIN):
        raise Refused(403, "bad signature: not signed by the node's key")
    now = time.time() if now is None else now
    ts, nonce = message["ts"], message["nonce"]
    window = settings.FEDERATION_CLOCK_WINDOW_S
    if isinstance(ts, bool) or not isinstance(ts, int | float) or abs(now - float(ts)) > window:
        raise Refused(403, f"stale: ts must be within {window:.0f} s of central's clock")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise Refused(400, "nonce: a string of 16 to 64 characters")
    if not cache.add(f"flower:key:{node.uuid}:{nonce}", 1, timeout=int(2 * window) + 1):
        raise Refused(403, "this request was used before (a replay)")
    try:
        public = pki.check_public_key(str(message["public_key"]))
    except ValueError as exc:
        raise Refused(400, f"public_key: {exc}") from None
    try:
        known = link.nodes()
        row = FlowerKey.objects.filter(node=node).first()
        live = row is not None and known.get(row.flower_node_id, "") not in ("", "unregistered")
        if row is None or row.public_key != public or not live:
            if row is not None and live:
                link.unregister(row.flower_node_id)  # (a new key replaces the old one)
            node_id = link.register(public)
            FlowerKey.objects.update_or_create(
                node=node,
                defaults={"public_key": public, "flower_node_id": node_id,
                          "registered_at": timezone.now()},
            )  # fmt: skip
            row = FlowerKey.objects.get(node=node)
    except link.FlowerError as exc:
        raise Refused(503, f"central's SuperLink could not register the key: {exc}") from None
    from federation import keys

    reply = {"node": str(node.uuid), "flower_node_id": row.flower_node_id, "ca": link.ca_pem(),
             "ts": round(time.time(), 3)}  # fmt: skip
    return _sign(reply, keys.central_key(), REPLY_DOMAIN)


def sync_allow_list() -> dict[int, str]:
    """Before a round: the keys of revoked or disabled nodes unregistered from the SuperLink;
    the SuperNodes that may take part, Flower node id → node name."""
    from federation.flower import link
    from federation.flower.models import FlowerKey

    known = link.nodes()
    allowed: dict[int, str] = {}
    for row in FlowerKey.objects.select_related("node"):
        if not row.flower_node_id:
            continue
        if row.node.revoked_at is not None or not row.node.enabled:
            if known.get(row.flower_node_id, "") not in ("", "unregistered"):
                link.unregister(row.flower_node_id)
            FlowerKey.objects.filter(pk=row.pk).update(flower_node_id="")
        else:
            allowed[int(row.flower_node_id)] = row.node.name
    return allowed


def allowed_nodes() -> dict[int, str]:
    """The SuperNodes of nodes on the allow-list (no call to the SuperLink)."""
    from federation.flower.models import FlowerKey

    rows = FlowerKey.objects.select_related("node").exclude(flower_node_id="")
    return {int(r.flower_node_id): r.node.name for r in rows
            if r.node.revoked_at is None and r.node.enabled}  # fmt: skip
