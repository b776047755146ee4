"""`/ws/federation/` on central (federation/consumers.py) through the real ASGI application: the
signed hello, packets acknowledged, merged and broadcast, refusals answered on an open
connection, revocation, catch-up."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from constellation.engine import e8, fisher_rao, geodesic, karcher_mean
from constellation.models import Kernel
from constellation.services import ensure_kernels
from federation import central, consumers, keys, packets, receiving
from federation.models import AnchorVersion, Node, ReceivedPacket, Rejection
from qigcenter.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]

MINIMAL = e8.preset_kernels("minimal")
K0, K1 = MINIMAL[0], MINIMAL[1]
NOT_HELD = next(k for k in range(packets.N_KERNELS) if k not in MINIMAL)
TIMEOUT = 10.0


@dataclass
class Edge:
    """An enrolled edge as central knows it, with the private key only the edge has."""

    node: Node
    key: Ed25519PrivateKey

    @property
    def uuid(self) -> str:
        return str(self.node.uuid)

    def hello(self, applied: int = 0, ts: float | None = None, kind: str = "hello") -> str:
        body = {
            "type": "hello",
            "node": self.uuid,
            "ts": round(time.time() if ts is None else ts, 3),
            "nonce": uuid.uuid4().hex,
            "applied": applied,
        }
        return packets.encoded(packets.sign(body, self.key, kind))

    def packet(
        self,
        kernels: dict[int, tuple[Any, float]] | None = None,
        packet_id: str | None = None,
        ts: float | None = None,
    ) -> dict[str, Any]:
        """A signed basin packet (default: kernel K0 moved part of the way toward kernel 0)."""
        kernels = {K0: (update_anchor(), 50.0)} if kernels is None else kernels
        body = packets.basin_body(self.uuid, kernels, packet_id=packet_id, phi=0.4, kappa=64.0)
        return packets.stamp_and_sign(body, self.key, time.time() if ts is None else ts)


def update_anchor(kernel: int = K0, toward: int = NOT_HELD, t: float = 0.3) -> np.ndarray:
    return geodesic(e8.anchor(kernel), e8.anchor(toward), t)


def wire(packet: dict[str, Any]) -> str:
    return packets.encoded({"type": "packet", "packet": packet})


def enrol(name: str, size: str = "minimal") -> Edge:
    node = Node.objects.create(name=name, size=size)
    token = central.issue_token(node)
    key = packets.new_key()
    return Edge(central.join(token, packets.public_text(key), size), key)


def node_row(edge: Edge) -> Node:
    return Node.objects.get(pk=edge.node.pk)


def kernel_anchor(index: int) -> list[float]:
    return list(Kernel.objects.get(index=index).anchor)


def rejections(edge: Edge) -> list[str]:
    return list(
        Rejection.objects.filter(node=edge.node.pk).order_by("id").values_list("reason", flat=True)
    )


db = sync_to_async


@pytest.fixture
def central_node(settings: Any, tmp_path: Any, transactional_db: None) -> None:
    settings.FEDERATION = "central"
    settings.FEDERATION_SIZE = "full"
    settings.DATA_DIR = tmp_path  # central's key lives under it
    ensure_kernels()


@pytest.fixture
def edges(central_node: None) -> tuple[Edge, Edge]:
    return enrol("edge-a"), enrol("edge-b")


@pytest.fixture
async def sockets() -> AsyncIterator[list[WebsocketCommunicator]]:
    """Every communicator a test opens, disconnected after it however it ended."""
    opened: list[WebsocketCommunicator] = []
    yield opened
    for communicator in opened:
        with contextlib.suppress(Exception):  # closed already by the server
            await communicator.disconnect()


async def open_socket(sockets: list[WebsocketCommunicator]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/federation/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    sockets.append(communicator)
    return communicator


async def next_json(communicator: WebsocketCommunicator) -> dict[str, Any]:
    message: dict[str, Any] = await communicator.receive_json_from(timeout=TIMEOUT)
    return message


async def closed_with(communicator: WebsocketCommunicator) -> int:
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close", output
    code: int = output["code"]
    return code


async def greeted(
    sockets: list[WebsocketCommunicator], edge: Edge, applied: int = 0
) -> WebsocketCommunicator:
    communicator = await open_socket(sockets)
    await communicator.send_to(text_data=edge.hello(applied))
    welcome = await next_json(communicator)
    assert welcome["type"] == "welcome", welcome
    return communicator


async def acked(communicator: WebsocketCommunicator, edge: Edge) -> dict[str, Any]:
    """Send a valid packet; return the ack (and take the anchor broadcast back to the sender)."""
    packet = edge.packet()
    await communicator.send_to(text_data=wire(packet))
    ack = await next_json(communicator)
    assert ack["type"] == "ack" and ack["id"] == packet["id"], ack
    assert "versions" in ack, ack
    for _ in ack["versions"]:
        assert (await next_json(communicator))["type"] == "anchor"
    return ack


def central_public() -> Any:
    return packets.load_public(packets.public_text(keys.central_key()))


# ---- hello --------------------------------------------------------------------------------------
async def test_a_signed_hello_is_welcomed(edges: tuple[Edge, Edge], sockets: list[Any]) -> None:
    a, _ = edges
    communicator = await open_socket(sockets)
    await communicator.send_to(text_data=a.hello())
    welcome = await next_json(communicator)
    assert welcome == {
        "type": "welcome",
        "node": a.uuid,
        "kernels": sorted(MINIMAL),
        "heartbeat_s": django_settings.FEDERATION_HEARTBEAT_S,
    }
    assert await communicator.receive_nothing(timeout=0.3)  # nothing to catch up on yet
    assert (await db(node_row)(a)).online is True
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    pong = await next_json(communicator)
    assert pong["type"] == "pong" and abs(pong["ts"] - time.time()) < 5
    await communicator.disconnect()
    sockets.remove(communicator)
    assert (await db(node_row)(a)).online is False


def _other_key(edge: Edge) -> str:
    body = json.loads(edge.hello())
    return packets.encoded(packets.sign(body, packets.new_key(), "hello"))


def _basin_kind(edge: Edge) -> str:
    return edge.hello(kind="basin")


def _tampered(edge: Edge) -> str:
    body = json.loads(edge.hello())
    body["applied"] = 99
    return packets.encoded(body)


def _stale(edge: Edge) -> str:
    return edge.hello(ts=time.time() - 1000)


def _unknown_node(edge: Edge) -> str:
    body = {**json.loads(edge.hello()), "node": str(uuid.uuid4())}
    return packets.encoded(packets.sign(body, edge.key, "hello"))


def _no_sig(edge: Edge) -> str:
    body = json.loads(edge.hello())
    del body["sig"]
    return packets.encoded(body)


def _a_packet_first(edge: Edge) -> str:
    return wire(edge.packet())


def _not_json(edge: Edge) -> str:
    return "{hello"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_other_key, "bad signature"),
        (_basin_kind, "bad signature"),
        (_tampered, "bad signature"),
        (_no_sig, "bad signature"),
        (_stale, "stale"),
        (_unknown_node, "unknown node"),
        (_a_packet_first, "malformed"),
        (_not_json, "malformed"),
    ],
)
async def test_a_bad_hello_is_refused_and_closed_with_4401(
    edges: tuple[Edge, Edge], sockets: list[Any], make: Callable[[Edge], str], reason: str
) -> None:
    a, _ = edges
    communicator = await open_socket(sockets)
    await communicator.send_to(text_data=make(a))
    refused = await next_json(communicator)
    assert refused["type"] == "refused" and refused["reason"] == reason, refused
    assert await closed_with(communicator) == consumers.UNAUTHENTICATED == 4401
    node = await db(node_row)(a)
    assert node.online is False
    assert node.packets_in == 0 and await db(ReceivedPacket.objects.count)() == 0


async def test_a_replayed_hello_is_refused(edges: tuple[Edge, Edge], sockets: list[Any]) -> None:
    """A captured hello, sent again within the clock window, does not open a connection."""
    a, _ = edges
    hello = a.hello()
    first = await open_socket(sockets)
    await first.send_to(text_data=hello)
    assert (await next_json(first))["type"] == "welcome"
    second = await open_socket(sockets)
    await second.send_to(text_data=hello)
    refused = await next_json(second)
    assert refused["type"] == "refused" and "replay" in refused["detail"], refused
    assert await closed_with(second) == 4401


async def test_a_node_revoked_elsewhere_is_cut_off_at_its_next_heartbeat(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    """Revoked by another process (the row changed, no group message reached this one)."""
    a, _ = edges
    communicator = await greeted(sockets, a)
    await db(Node.objects.filter(pk=a.node.pk).update)(revoked_at=timezone.now())
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    refused = await next_json(communicator)
    assert refused["type"] == "refused" and refused["reason"] == "revoked node", refused
    assert await closed_with(communicator) == 4403


async def test_no_hello_in_time_closes_with_4408(
    central_node: None, sockets: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "HELLO_TIMEOUT_S", 0.2)
    communicator = await open_socket(sockets)
    assert await closed_with(communicator) == consumers.NO_HELLO == 4408


async def test_the_endpoint_closes_with_4404_when_not_central(
    settings: Any, sockets: list[Any]
) -> None:
    settings.FEDERATION = ""
    communicator = await open_socket(sockets)
    assert await closed_with(communicator) == consumers.NOT_CENTRAL == 4404


# ---- packets ------------------------------------------------------------------------------------
async def test_a_valid_packet_is_merged_acked_and_broadcast_signed(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    a, b = edges
    sender = await greeted(sockets, a)
    listener = await greeted(sockets, b)
    before = np.asarray(await db(kernel_anchor)(K0))
    packet = a.packet({K0: (update_anchor(), 50.0)})

    await sender.send_to(text_data=wire(packet))
    ack = await next_json(sender)
    version = await db(AnchorVersion.objects.get)(kernel=K0)
    assert ack == {"type": "ack", "id": packet["id"], "versions": {str(K0): version.seq}}

    # Central's anchor message reaches the other edge (and the sender: it holds the kernel too).
    for communicator in (listener, sender):
        anchor = await next_json(communicator)
        assert anchor["type"] == "anchor"
        assert anchor["kernel"] == K0 and anchor["seq"] == version.seq
        packets.verify(anchor, central_public(), "anchor")
        assert anchor["anchor"] == packets.wire_anchor(version.anchor)
        with pytest.raises(packets.Rejected, match="bad signature"):
            packets.verify(anchor, central_public(), "basin")
        with pytest.raises(packets.Rejected, match="bad signature"):
            packets.verify(anchor, packets.load_public(packets.public_text(a.key)), "anchor")

    # The kernel row holds the weighted Karcher mean of its previous anchor and the update.
    update = np.asarray(packet["kernels"][str(K0)]["anchor"])
    prior = django_settings.FEDERATION_PRIOR_WEIGHT
    expected = karcher_mean(np.stack([before, update]), np.asarray([prior, 50.0]))
    merged = np.asarray(await db(kernel_anchor)(K0))
    np.testing.assert_allclose(merged, expected, atol=1e-12)
    np.testing.assert_allclose(version.anchor, merged, atol=1e-12)
    # Between two points that mean lies on the geodesic, 50 / (prior + 50) of the way.
    share = 50.0 / (prior + 50.0)
    np.testing.assert_allclose(merged, geodesic(before, update, share), atol=1e-9)
    assert float(fisher_rao(before, merged)) == pytest.approx(
        share * float(fisher_rao(before, update)), rel=1e-6
    )
    assert version.mass == pytest.approx(prior + 50.0)
    assert version.packets == [packet["id"]] and version.nodes == [a.uuid]

    row = await db(ReceivedPacket.objects.get)(packet_id=packet["id"])
    assert row.node_id == a.node.pk and row.kernels == [K0]
    node = await db(node_row)(a)
    assert (node.packets_in, node.packets_rejected, node.duplicates) == (1, 0, 0)
    assert await listener.receive_nothing(timeout=0.3)


async def test_an_edge_not_holding_the_kernel_gets_no_broadcast(
    central_node: None, sockets: list[Any]
) -> None:
    a = await db(enrol)("edge-a")
    medium = await db(enrol)("edge-m", "medium")
    only_medium = next(k for k in e8.preset_kernels("medium") if k not in MINIMAL)
    sender = await greeted(sockets, medium)
    listener = await greeted(sockets, a)
    packet = medium.packet({only_medium: (update_anchor(only_medium, K0), 5.0)})
    await sender.send_to(text_data=wire(packet))
    assert (await next_json(sender))["type"] == "ack"
    assert (await next_json(sender))["kernel"] == only_medium
    assert await listener.receive_nothing(timeout=0.3)


async def test_the_same_packet_id_again_is_a_duplicate(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    a, b = edges
    sender = await greeted(sockets, a)
    listener = await greeted(sockets, b)
    packet = a.packet()
    await sender.send_to(text_data=wire(packet))
    assert (await next_json(sender))["type"] == "ack"
    assert (await next_json(sender))["type"] == "anchor"
    assert (await next_json(listener))["type"] == "anchor"
    merged = await db(kernel_anchor)(K0)

    # Resent as an edge resends: the same id, signed again with a fresh ts.
    again = a.packet({K0: (update_anchor(), 50.0)}, packet_id=packet["id"], ts=time.time() + 1)
    assert again["sig"] != packet["sig"]
    await sender.send_to(text_data=wire(again))
    assert await next_json(sender) == {"type": "ack", "id": packet["id"], "duplicate": True}
    assert await sender.receive_nothing(timeout=0.3)
    assert await listener.receive_nothing(timeout=0.1)

    assert await db(AnchorVersion.objects.count)() == 1
    assert await db(ReceivedPacket.objects.count)() == 1
    assert await db(kernel_anchor)(K0) == merged
    node = await db(node_row)(a)
    assert (node.packets_in, node.duplicates, node.packets_rejected) == (1, 1, 0)


# Each refused message: (builder of the raw text, expected reason, whether it names the packet id).
def _r_tampered(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = edge.packet()
    anchor = packet["kernels"][str(K0)]["anchor"]
    anchor[0], anchor[1] = anchor[1], anchor[0]
    return wire(packet), packet["id"]


def _r_replayed_new_ts(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = edge.packet(ts=time.time() - 1000)  # captured long ago …
    packet["ts"] = round(time.time(), 3)  # … and replayed with a fresh ts but the old signature
    return wire(packet), packet["id"]


def _r_oversized(edge: Edge, other: Edge) -> tuple[str, str]:
    message = {"type": "packet", "packet": edge.packet(), "pad": "x" * 4100}
    return packets.encoded(message), ""


def _r_slightly_oversized(edge: Edge, other: Edge) -> tuple[str, str]:
    message = {"type": "packet", "packet": edge.packet(), "pad": ""}
    size = len(packets.encoded(message))
    message["pad"] = "x" * (packets.MAX_PACKET_BYTES + 1 - size)
    raw = packets.encoded(message)
    assert len(raw) == packets.MAX_PACKET_BYTES + 1
    return raw, ""


def _r_not_json(edge: Edge, other: Edge) -> tuple[str, str]:
    return '{"type": "packet", "packet": {', ""


def _r_packet_not_object(edge: Edge, other: Edge) -> tuple[str, str]:
    return json.dumps({"type": "packet", "packet": [1, 2]}), ""


def _r_unknown_type(edge: Edge, other: Edge) -> tuple[str, str]:
    return json.dumps({"type": "gossip"}), ""


def _r_stale(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = edge.packet(ts=time.time() - 1000)
    return wire(packet), packet["id"]


def _r_wrong_dimension(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = edge.packet({K0: ([1.0 / 63] * 63, 5.0)})
    return wire(packet), packet["id"]


def _r_not_held(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = edge.packet({NOT_HELD: (e8.anchor(NOT_HELD), 5.0)})
    return wire(packet), packet["id"]


def _r_off_simplex(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = edge.packet({K0: ([1.0 / 60] * 64, 5.0)})
    return wire(packet), packet["id"]


def _r_wrong_version(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = packets.sign({**edge.packet(), "v": 2}, edge.key, "basin")
    return wire(packet), packet["id"]


def _r_names_another_node(edge: Edge, other: Edge) -> tuple[str, str]:
    body = packets.basin_body(other.uuid, {K0: (update_anchor(), 5.0)})
    packet = packets.stamp_and_sign(body, edge.key, time.time())  # signed by this edge
    return wire(packet), packet["id"]


def _r_other_nodes_packet(edge: Edge, other: Edge) -> tuple[str, str]:
    packet = other.packet()  # a valid packet of the other edge, sent on this connection
    return wire(packet), packet["id"]


def _r_unknown_node(edge: Edge, other: Edge) -> tuple[str, str]:
    body = packets.basin_body(str(uuid.uuid4()), {K0: (update_anchor(), 5.0)})
    packet = packets.stamp_and_sign(body, edge.key, time.time())
    return wire(packet), packet["id"]


REFUSALS = [
    (_r_tampered, "bad signature"),
    (_r_replayed_new_ts, "bad signature"),
    (_r_oversized, "oversized"),
    (_r_slightly_oversized, "oversized"),
    (_r_not_json, "malformed"),
    (_r_packet_not_object, "malformed"),
    (_r_unknown_type, "malformed"),
    (_r_stale, "stale"),
    (_r_wrong_dimension, "wrong dimension"),
    (_r_not_held, "kernel not held"),
    (_r_off_simplex, "not on the simplex"),
    (_r_wrong_version, "wrong protocol version"),
    (_r_names_another_node, "bad signature"),
    (_r_other_nodes_packet, "bad signature"),
    (_r_unknown_node, "unknown node"),
]


@pytest.mark.parametrize(("make", "reason"), REFUSALS, ids=[m.__name__[3:] for m, _ in REFUSALS])
async def test_a_refused_packet_is_answered_and_the_connection_stays_open(
    edges: tuple[Edge, Edge],
    sockets: list[Any],
    make: Callable[[Edge, Edge], tuple[str, str]],
    reason: str,
) -> None:
    a, b = edges
    communicator = await greeted(sockets, a)
    raw, packet_id = make(a, b)
    await communicator.send_to(text_data=raw)
    answer = await next_json(communicator)
    assert answer["type"] == "rejected" and answer["reason"] == reason, answer
    assert answer["id"] == packet_id and answer["detail"]
    assert await communicator.receive_nothing(timeout=0.2)  # not closed, nothing broadcast

    assert await db(rejections)(a) == [reason]
    rejection = await db(Rejection.objects.get)(node=a.node.pk)
    assert rejection.packet_id == packet_id and rejection.size == len(raw.encode())
    assert await db(AnchorVersion.objects.count)() == 0
    node = await db(node_row)(a)
    assert (node.packets_rejected, node.packets_in) == (1, 0)
    assert (await db(node_row)(b)).packets_rejected == 0

    # The connection is still good: the next valid packet is acknowledged and merged.
    ack = await acked(communicator, a)
    assert list(ack["versions"]) == [str(K0)]
    node = await db(node_row)(a)
    assert (node.packets_rejected, node.packets_in) == (1, 1)


async def test_refusals_are_counted_per_node(edges: tuple[Edge, Edge], sockets: list[Any]) -> None:
    a, b = edges
    communicator = await greeted(sockets, a)
    for make, reason in REFUSALS:
        await communicator.send_to(text_data=make(a, b)[0])
        assert (await next_json(communicator))["reason"] == reason
    await acked(communicator, a)
    assert sorted(await db(rejections)(a)) == sorted(r for _, r in REFUSALS)
    node = await db(node_row)(a)
    assert (node.packets_rejected, node.packets_in) == (len(REFUSALS), 1)


# ---- revocation ---------------------------------------------------------------------------------
async def test_revoking_a_connected_node_closes_it_with_4403_and_refuses_its_next_hello(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    a, b = edges
    revoked = await greeted(sockets, a)
    other = await greeted(sockets, b)
    await db(central.revoke)(a.node)
    refusal = await next_json(revoked)
    assert refusal["type"] == "refused" and refusal["reason"] == "revoked node"
    assert await closed_with(revoked) == consumers.REVOKED == 4403
    assert await other.receive_nothing(timeout=0.2)  # the other edge is not touched
    await acked(other, b)

    again = await open_socket(sockets)
    await again.send_to(text_data=a.hello())
    refused = await next_json(again)
    assert refused["type"] == "refused" and refused["reason"] == "revoked node"
    assert await closed_with(again) == 4403
    node = await db(node_row)(a)
    assert node.revoked_at is not None and node.online is False


# ---- catch-up and acknowledgement ------------------------------------------------------------
def _merge_versions(edge: Edge) -> list[int]:
    """Three merges through central's service: K0 twice, then K1 (versions 1, 2, 3)."""
    seqs = []
    for kernel, toward in ((K0, NOT_HELD), (K0, NOT_HELD + 1), (K1, NOT_HELD)):
        packet = edge.packet({kernel: (update_anchor(kernel, toward), 10.0)})
        reply = receiving.apply_batch([_arrival(edge, packet)]).replies[0]
        assert reply["type"] == "ack", reply
        seqs.append(reply["versions"][str(kernel)])
    return seqs


async def test_an_edge_catches_up_on_the_newest_version_of_each_kernel(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    a, b = edges
    seqs = await db(_merge_versions)(a)
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    newest = {K0: seqs[1], K1: seqs[2]}

    communicator = await greeted(sockets, b, applied=0)
    caught = [await next_json(communicator) for _ in newest]
    assert [(m["kernel"], m["seq"]) for m in caught] == [(K0, seqs[1]), (K1, seqs[2])]
    for message in caught:
        assert message["type"] == "anchor"
        packets.verify(message, central_public(), "anchor")
        version = await db(AnchorVersion.objects.get)(seq=message["seq"])
        assert message["anchor"] == packets.wire_anchor(version.anchor)
        assert message["anchor"] == packets.wire_anchor(await db(kernel_anchor)(message["kernel"]))
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    sockets.remove(communicator)

    # Having applied version 2, only kernel K1's version 3 is missing; having applied 3, nothing.
    partly = await greeted(sockets, b, applied=seqs[1])
    assert [(m["kernel"], m["seq"]) for m in [await next_json(partly)]] == [(K1, seqs[2])]
    assert await partly.receive_nothing(timeout=0.3)
    current = await greeted(sockets, a, applied=seqs[2])
    assert await current.receive_nothing(timeout=0.3)


async def test_applied_moves_the_nodes_applied_version_forward_only(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    a, b = edges
    seqs = await db(_merge_versions)(a)
    communicator = await greeted(sockets, b, applied=0)
    for _ in range(2):
        await next_json(communicator)  # the catch-up
    assert (await db(node_row)(b)).applied_version == 0

    async def applied(seq: Any) -> int:
        await communicator.send_to(text_data=json.dumps({"type": "applied", "seq": seq}))
        await communicator.send_to(text_data=json.dumps({"type": "ping"}))
        assert (await next_json(communicator))["type"] == "pong"  # processed in order
        return (await db(node_row)(b)).applied_version

    assert await applied(seqs[1]) == seqs[1]
    assert await applied(seqs[2]) == seqs[2]
    assert await applied(seqs[0]) == seqs[2]  # never backwards
    assert await applied(-1) == seqs[2]
    assert await applied("3") == seqs[2]
    assert (await db(node_row)(a)).applied_version == 0
    assert await db(central.lag_s)(await db(node_row)(b)) == 0.0


# ---- batches ------------------------------------------------------------------------------------
def _arrival(edge: Edge, packet: dict[str, Any]) -> receiving.Arrival:
    node = Node.objects.get(pk=edge.node.pk)
    checked = receiving.check_packet(
        node, packets.load_public(node.public_key), wire(packet), time.time()
    )
    return receiving.Arrival(node.pk, edge.uuid, node.name, checked, len(wire(packet)))


def test_a_batch_merges_each_kernel_once_over_every_update_and_applies_each_id_once(
    edges: tuple[Edge, Edge],
) -> None:
    a, b = edges
    before = np.asarray(kernel_anchor(K0))
    ua, ub, uk1 = update_anchor(K0, NOT_HELD), update_anchor(K0, NOT_HELD + 1), update_anchor(K1)
    first = a.packet({K0: (ua, 30.0)})
    second = b.packet({K0: (ub, 70.0), K1: (uk1, 20.0)})
    arrivals = [_arrival(a, first), _arrival(b, second), _arrival(a, first)]  # the first twice

    done = receiving.apply_batch(arrivals)

    versions = {v.kernel: v for v in AnchorVersion.objects.all()}
    assert sorted(versions) == sorted([K0, K1])  # one version per kernel, not per packet
    k0, k1 = versions[K0], versions[K1]
    assert k0.packets == [first["id"], second["id"]] and k0.nodes == [a.uuid, b.uuid]
    prior = django_settings.FEDERATION_PRIOR_WEIGHT
    assert k0.mass == pytest.approx(prior + 100.0) and k1.mass == pytest.approx(prior + 20.0)
    # The weighted Karcher mean of the kernel's anchor and every update of the batch (the
    # updates travelled rounded to 9 decimals).
    wanted = karcher_mean(np.asarray([before, ua, ub]), np.asarray([prior, 30.0, 70.0]))
    assert fisher_rao(np.asarray(k0.anchor), wanted) < 1e-7
    assert fisher_rao(np.asarray(kernel_anchor(K0)), np.asarray(k0.anchor)) < 1e-12

    assert done.replies == [
        {"type": "ack", "id": first["id"], "versions": {str(K0): k0.seq}},
        {"type": "ack", "id": second["id"], "versions": {str(K0): k0.seq, str(K1): k1.seq}},
        {"type": "ack", "id": first["id"], "duplicate": True},
    ]
    assert sorted((m["seq"], m["kernel"]) for m in done.broadcast) == sorted(
        [(k0.seq, K0), (k1.seq, K1)]
    )
    assert [m["seq"] for m in done.broadcast] == sorted(m["seq"] for m in done.broadcast)
    for message in done.broadcast:
        packets.verify(message, central_public(), "anchor")
    assert sorted(m["index"] for m in done.moved) == sorted([K0, K1])
    assert ReceivedPacket.objects.count() == 2
    assert (node_row(a).packets_in, node_row(a).duplicates) == (1, 1)
    assert (node_row(b).packets_in, node_row(b).duplicates) == (1, 0)


def test_a_batch_refuses_a_node_revoked_after_its_packet_was_checked(
    edges: tuple[Edge, Edge],
) -> None:
    a, b = edges
    checked = _arrival(a, a.packet())
    central.revoke(node_row(a))
    done = receiving.apply_batch([checked, _arrival(b, b.packet())])
    assert done.replies[0]["type"] == "rejected" and done.replies[0]["reason"] == "revoked node"
    assert done.replies[1]["type"] == "ack"
    assert list(ReceivedPacket.objects.values_list("node", flat=True)) == [b.node.pk]
    assert rejections(a) == ["revoked node"]


def test_the_merged_anchor_does_not_depend_on_the_order_of_the_batch(
    edges: tuple[Edge, Edge],
) -> None:
    a, b = edges
    first = _arrival(a, a.packet({K0: (update_anchor(K0, NOT_HELD), 30.0)}))
    second = _arrival(b, b.packet({K0: (update_anchor(K0, NOT_HELD + 1), 70.0)}))
    start = kernel_anchor(K0)
    with contextlib.suppress(RuntimeError), transaction.atomic():
        receiving.apply_batch([first, second])
        forward = kernel_anchor(K0)
        raise RuntimeError("roll back")
    assert kernel_anchor(K0) == start
    receiving.apply_batch([second, first])
    assert fisher_rao(np.asarray(kernel_anchor(K0)), np.asarray(forward)) < 1e-9


async def test_kernels_merged_in_one_batch_reach_an_edge_in_one_frame(
    edges: tuple[Edge, Edge], sockets: list[Any]
) -> None:
    a, b = edges
    sender = await greeted(sockets, a)
    listener = await greeted(sockets, b)
    packet = a.packet({K0: (update_anchor(K0), 10.0), K1: (update_anchor(K1), 10.0)})
    await sender.send_to(text_data=wire(packet))
    ack = await next_json(sender)
    assert ack["type"] == "ack" and sorted(ack["versions"]) == sorted([str(K0), str(K1)])
    frame = await next_json(listener)
    assert frame["type"] == "anchors", frame
    assert {m["kernel"]: m["seq"] for m in frame["anchors"]} == {
        K0: ack["versions"][str(K0)],
        K1: ack["versions"][str(K1)],
    }
    for message in frame["anchors"]:
        packets.verify(message, central_public(), "anchor")
    assert await listener.receive_nothing(timeout=0.2)  # one frame, not one per kernel
