"""Central's side of federation (docs/federation.md): the allow-list and enrolment, the hello,
anchor versions, what edges catch up from and what they acknowledged. Receiving packets (check,
batch, merge) is `federation.receiving`."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, IntegerField, Max, OuterRef, Subquery, Value, When
from django.utils import timezone

from constellation.engine import e8
from federation import keys, packets
from federation.models import AnchorVersion, Node

log = logging.getLogger(__name__)

EDGES_GROUP = "federation.edges"


def node_group(node_uuid: str) -> str:
    return f"federation.node.{node_uuid}"


def held(size: str) -> frozenset[int]:
    return frozenset(e8.preset_kernels(size))


# ---- enrolment ----------------------------------------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(node: Node) -> str:
    """A new one-time join token for a node that has not joined (the old one stops working).
    Only its sha256 is kept; the token is returned once."""
    token = "qigjoin_" + secrets.token_urlsafe(32)
    node.join_token_hash = token_hash(token)
    node.join_expires_at = timezone.now() + timedelta(seconds=settings.FEDERATION_JOIN_TOKEN_TTL_S)
    node.save(update_fields=["join_token_hash", "join_expires_at"])
    return token


class JoinRefused(ValueError):
    pass


def join(token: str, public_key: str, size: str) -> Node:
    """An edge joins with its one-time token and its public key; the token is spent."""
    try:
        packets.load_public(public_key)
    except ValueError as exc:
        raise JoinRefused(f"public_key: {exc}") from None
    with transaction.atomic():
        node = (
            Node.objects.select_for_update()
            .filter(join_token_hash=token_hash(token))
            .exclude(join_token_hash="")
            .first()
        )
        if node is None:
            raise JoinRefused("the join token is not valid (wrong, already used, or replaced)")
        if node.join_expires_at is None or node.join_expires_at < timezone.now():
            raise JoinRefused(f"the join token of node {node.name} expired; ask for a new one")
        if size != node.size:
            raise JoinRefused(
                f"node {node.name} was added as size {node.size}; this edge runs {size} "
                f"(start it with QIG_FEDERATION_SIZE={node.size})"
            )
        node.public_key = public_key
        node.joined_at = timezone.now()
        node.join_token_hash = ""
        node.join_expires_at = None
        node.save(update_fields=["public_key", "joined_at", "join_token_hash", "join_expires_at"])
    return node


def join_reply(node: Node) -> dict[str, Any]:
    return {
        "node": str(node.uuid),
        "name": node.name,
        "size": node.size,
        "kernels": sorted(held(node.size)),
        "central_key": packets.public_text(keys.central_key()),
    }


def revoke(node: Node) -> Node:
    """Off the allow-list at once: the row says so (its packets are refused from now on) and its
    open connection is closed (`federation.consumers` hears it on the node's group)."""
    from dashboard.services import group_send

    Node.objects.filter(pk=node.pk).update(
        revoked_at=timezone.now(), enabled=False, online=False, join_token_hash=""
    )
    node.refresh_from_db()
    group_send(node_group(str(node.uuid)), {"type": "federation.revoke"})
    return node


# ---- receiving ---------------------------------------------------------------------------------
def authenticate(node_uuid: str) -> Node:
    """The node a connection speaks for (Rejected: unknown or revoked)."""
    node = Node.objects.filter(uuid=node_uuid).first() if packets.is_uuid(node_uuid) else None
    if node is None or not node.public_key:
        raise packets.Rejected("unknown node", f"{node_uuid!r} is not on the allow-list")
    if node.revoked_at is not None or not node.enabled:
        raise packets.Rejected("revoked node", f"node {node.name} was revoked")
    return node


def check_fetch(node_uuid: str, stamp: str, sig: str, path: str, now: float) -> Node:
    """An edge's signed HTTP request for `path` (a bundle's file): its `X-QIG-Node`,
    `X-QIG-Time` and `X-QIG-Signature` ("fetch" domain over node, time and path), within the
    clock window. Rejected: unknown node, revoked node, bad signature, stale request."""
    node = authenticate(node_uuid)
    try:
        ts = float(stamp)
        body = {"node": node_uuid, "ts": round(ts, 3), "path": path, "sig": sig}
        packets.verify(body, packets.load_public(node.public_key), "fetch")
    except ValueError:
        raise packets.Rejected("bad signature", "the time is not a number") from None
    if abs(now - ts) > settings.FEDERATION_CLOCK_WINDOW_S:
        raise packets.Rejected("stale request", f"signed {now - ts:+.1f} s from now")
    return node


def check_hello(message: dict[str, Any], now: float) -> Node:
    """A connection's first message: `{"type": "hello", "node", "ts", "nonce", "sig"}` signed by
    the node's key within the clock window."""
    node = authenticate(str(message.get("node", "")))
    packets.verify(message, packets.load_public(node.public_key), "hello")
    ts = message.get("ts")
    window = settings.FEDERATION_CLOCK_WINDOW_S
    if not isinstance(ts, int | float) or abs(now - float(ts)) > window:
        raise packets.Rejected("stale", "the hello's ts is outside the clock window")
    nonce = message.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise packets.Rejected("malformed", "the hello needs a nonce of 16 to 64 characters")
    from django.core.cache import cache

    # A hello is good once: a captured one replayed within the window is refused.
    if not cache.add(f"federation:hello:{node.uuid}:{nonce}", 1, timeout=int(2 * window) + 1):
        raise packets.Rejected("bad signature", "this hello was used before (a replay)")
    return node


def own_learning(index: int, anchor: list[float], tokens: float) -> AnchorVersion:
    """Central's own promotion moved the kernel's anchor: a version like a merge's (its mass
    grows by the tokens trained), broadcast to every connected edge that holds the kernel."""
    from dashboard.services import group_send

    with transaction.atomic():
        last = AnchorVersion.objects.filter(kernel=index).order_by("-seq").first()
        mass = last.mass if last is not None else settings.FEDERATION_PRIOR_WEIGHT
        version = next_version(
            kernel=index,
            anchor=[float(v) for v in anchor],
            mass=min(mass + tokens, settings.FEDERATION_MAX_MASS),
            packets=[],
            nodes=["central"],
            created_at=timezone.now(),
        )
    message = anchor_message(version)
    group_send(EDGES_GROUP, {"type": "federation.anchor", "kernel": index, "message": message})
    return version


def next_version(**fields: Any) -> AnchorVersion:
    """The next version in the global sequence. Merges of different kernels run side by side
    (each locks its own kernel row): a seq taken meanwhile by another is a unique-index
    conflict, and the next number is tried (in a savepoint, so the packet's transaction
    stays usable)."""
    for _ in range(20):
        seq = (AnchorVersion.objects.aggregate(m=Max("seq"))["m"] or 0) + 1
        try:
            with transaction.atomic():
                return AnchorVersion.objects.create(seq=seq, **fields)
        except IntegrityError:
            continue
    raise RuntimeError("could not number an anchor version after 20 tries")


def anchor_message(version: AnchorVersion) -> dict[str, Any]:
    """A merged anchor as central broadcasts it, signed with central's key."""
    body = {
        "type": "anchor",
        "kernel": version.kernel,
        "seq": version.seq,
        "anchor": packets.wire_anchor(version.anchor),
        "created_at": version.created_at.timestamp(),
    }
    return packets.sign(body, keys.central_key(), "anchor")


def catch_up(node: Node, after: int) -> list[dict[str, Any]]:
    """The newest version of each of the node's kernels merged after version `after`, oldest
    first: what a reconnecting edge missed."""
    newest: dict[int, AnchorVersion] = {}
    for version in AnchorVersion.objects.filter(seq__gt=after, kernel__in=held(node.size)):
        newest.setdefault(version.kernel, version)  # ordered by -seq: the first is the newest
    return [anchor_message(v) for v in sorted(newest.values(), key=lambda v: v.seq)]


def set_online(node_id: int, online: bool) -> None:
    Node.objects.filter(pk=node_id).update(online=online, last_seen_at=timezone.now())


def still_allowed(node_id: int, applied: int | None = None) -> bool:
    """On the allow-list still (a heartbeat: marks it online and seen when it is, and writes the
    version it acknowledged, `applied`, when there is one to write)."""
    if applied is not None:
        acknowledged(node_id, applied)
    allowed = Node.objects.filter(pk=node_id, revoked_at__isnull=True, enabled=True).update(
        online=True, last_seen_at=timezone.now()
    )
    return bool(allowed)


def acknowledged(node_id: int, seq: int) -> None:
    """The edge applied version `seq` (and everything before it that it holds)."""
    acknowledged_many({node_id: seq})


def acknowledged_many(applied: dict[int, int]) -> None:
    """Each edge applied version `seq` (node id -> seq), in one statement. A seq beyond the
    newest version is not believed; a version never goes back."""
    newest = AnchorVersion.objects.aggregate(m=Max("seq"))["m"] or 0
    believed = {pk: seq for pk, seq in applied.items() if seq <= newest}
    version = Case(
        *(When(pk=pk, applied_version__lt=seq, then=Value(seq)) for pk, seq in believed.items()),
        default=F("applied_version"),
        output_field=IntegerField(),
    )
    Node.objects.filter(pk__in=list(applied)).update(
        applied_version=version, last_seen_at=timezone.now()
    )


def lag_s(node: Node, now: datetime | None = None) -> float | None:
    """How far behind the edge is: the age of the oldest version of its kernels that it has not
    applied; 0 when it is up to date, None before it joined."""
    return lags([node], now)[node.pk]


def lags(nodes: list[Node], now: datetime | None = None) -> dict[int, float | None]:
    """`lag_s` of many nodes in one query per size: each node's oldest version not applied,
    found by the database."""
    now = now or timezone.now()
    found: dict[int, float | None] = {n.pk: None for n in nodes if n.joined_at is None}
    for size in {n.size for n in nodes if n.joined_at is not None}:
        oldest = AnchorVersion.objects.filter(
            seq__gt=OuterRef("applied_version"), kernel__in=held(size)
        ).order_by("seq")
        rows = (
            Node.objects.filter(pk__in=[n.pk for n in nodes], size=size, joined_at__isnull=False)
            .annotate(oldest=Subquery(oldest.values("created_at")[:1]))
            .values_list("pk", "oldest")
        )
        for pk, at in rows:
            found[pk] = 0.0 if at is None else round((now - at).total_seconds(), 3)
    return found
