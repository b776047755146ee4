"""The basin-sync packet protocol (federation/packets.py): signatures, parsing, validation and
the packet size limit. Pure: no database, no Django request."""

from __future__ import annotations

import copy
import json
import math
import time
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constellation.engine import e8
from federation import packets
from federation.packets import Rejected

HELD = frozenset(e8.preset_kernels("minimal"))
K0 = e8.preset_kernels("minimal")[0]
NOW = 1_765_000_000.25
WINDOW = 300.0
KEY = packets.new_key()
PUBLIC = packets.load_public(packets.public_text(KEY))


def body(kernels: dict[int, tuple[Any, float]] | None = None, **lists: Any) -> dict[str, Any]:
    """An unsigned basin packet from a fresh node, one update of K0 by default."""
    kernels = {K0: (e8.anchor(K0), 120.0)} if kernels is None else kernels
    return packets.basin_body(str(uuid.uuid4()), kernels, phi=0.41, kappa=63.2, **lists)


def signed(unsigned: dict[str, Any] | None = None, ts: float = NOW) -> dict[str, Any]:
    return packets.stamp_and_sign(body() if unsigned is None else unsigned, KEY, ts)


def check(message: dict[str, Any], held: frozenset[int] | None = HELD) -> packets.Packet:
    return packets.check_body(message, PUBLIC, now=NOW, window_s=WINDOW, held=held)


def reason(message: dict[str, Any], held: frozenset[int] | None = HELD) -> str:
    with pytest.raises(Rejected) as caught:
        check(message, held)
    assert caught.value.reason in packets.REASONS
    return caught.value.reason


def resigned(message: dict[str, Any]) -> dict[str, Any]:
    """The message signed again as it is now (a node that signs what it should not)."""
    return packets.sign(message, KEY, "basin")


# ---- signatures ---------------------------------------------------------------------------------
def test_a_signed_packet_verifies_and_passes_check_body() -> None:
    message = signed()
    packets.verify(message, PUBLIC, "basin")
    packet = check(message)
    assert packet.node == message["node"]
    assert packet.id == message["id"]
    assert packet.ts == round(NOW, 3)
    [update] = packet.updates
    assert update.kernel == K0
    assert update.weight == 120.0
    assert update.anchor == packets.wire_anchor(e8.anchor(K0))
    # The key travels as base64 text and comes back as the same key.
    assert packets.public_text(PUBLIC) == packets.public_text(KEY)


def test_the_signature_covers_the_canonical_body_not_its_key_order() -> None:
    message = signed()
    reordered = dict(reversed(list(message.items())))
    packets.verify(reordered, PUBLIC, "basin")
    assert packets.canonical(reordered) == packets.canonical(message)
    assert b"sig" not in packets.canonical(message)


def _anchor_value(m: dict[str, Any]) -> None:
    anchor = m["kernels"][str(K0)]["anchor"]
    anchor[0], anchor[1] = anchor[1], anchor[0] + 1e-9  # still on the simplex within tolerance


def _node(m: dict[str, Any]) -> None:
    m["node"] = str(uuid.uuid4())


def _id(m: dict[str, Any]) -> None:
    m["id"] = str(uuid.uuid4())


def _ts(m: dict[str, Any]) -> None:
    m["ts"] = m["ts"] + 1.0


def _weight(m: dict[str, Any]) -> None:
    m["kernels"][str(K0)]["weight"] = 1e6


@pytest.mark.parametrize("tamper", [_anchor_value, _node, _id, _ts, _weight])
def test_a_tampered_field_fails_with_bad_signature(tamper: Any) -> None:
    message = copy.deepcopy(signed())
    tamper(message)
    with pytest.raises(Rejected) as caught:
        packets.verify(message, PUBLIC, "basin")
    assert caught.value.reason == "bad signature"
    assert reason(message) == "bad signature"


def test_a_signature_made_for_another_message_type_does_not_verify() -> None:
    unsigned = {**body(), "ts": NOW}
    as_hello = packets.sign(unsigned, KEY, "hello")
    packets.verify(as_hello, PUBLIC, "hello")
    with pytest.raises(Rejected, match="bad signature"):
        packets.verify(as_hello, PUBLIC, "basin")
    assert reason(as_hello) == "bad signature"
    with pytest.raises(Rejected, match="bad signature"):
        packets.verify(packets.sign(unsigned, KEY, "basin"), PUBLIC, "anchor")


def test_another_nodes_key_does_not_verify() -> None:
    other = packets.load_public(packets.public_text(packets.new_key()))
    with pytest.raises(Rejected, match="bad signature"):
        packets.verify(signed(), other, "basin")


@pytest.mark.parametrize("sig", [None, 42, "", "not base64!", "AAAA", "A" * 88])
def test_a_missing_or_garbled_signature_is_refused(sig: Any) -> None:
    message = {**signed(), "sig": sig}
    if sig is None:
        del message["sig"]
    with pytest.raises(Rejected) as caught:
        packets.verify(message, PUBLIC, "basin")
    assert caught.value.reason == "bad signature"
    # check_body says it earlier: a body without a string sig is malformed.
    assert reason(message) in ("malformed", "bad signature")


def test_load_public_refuses_what_is_not_a_key() -> None:
    for text in ("", "not base64!", "AAAA"):
        with pytest.raises(ValueError, match="not an Ed25519 public key"):
            packets.load_public(text)


# ---- parse ------------------------------------------------------------------------------------
def _padded(size: int) -> str:
    """A JSON object of exactly `size` bytes."""
    text = '{"pad":""}'
    return text[:-2] + "x" * (size - len(text)) + '"}'


def test_parse_takes_a_message_of_exactly_the_limit_and_refuses_one_byte_more() -> None:
    exact = _padded(packets.MAX_PACKET_BYTES)
    assert len(exact.encode()) == packets.MAX_PACKET_BYTES
    assert packets.parse(exact)["pad"].startswith("x")
    with pytest.raises(Rejected) as caught:
        packets.parse(_padded(packets.MAX_PACKET_BYTES + 1))
    assert caught.value.reason == "oversized"
    with pytest.raises(Rejected, match="oversized"):
        packets.parse(_padded(packets.MAX_PACKET_BYTES + 1).encode())


def test_parse_counts_bytes_not_characters() -> None:
    # 2,100 characters, 4,200 bytes in UTF-8.
    text = json.dumps({"pad": "é" * 2090}, ensure_ascii=False)
    assert len(text) < packets.MAX_PACKET_BYTES < len(text.encode())
    with pytest.raises(Rejected, match="oversized"):
        packets.parse(text)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{not json",
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        "[1, 2]",
        '"a string"',
        "null",
        "42",
        b"\xff\xfe",
    ],
)
def test_parse_refuses_what_is_not_a_json_object_as_malformed(raw: str | bytes) -> None:
    with pytest.raises(Rejected) as caught:
        packets.parse(raw)
    assert caught.value.reason == "malformed"


# ---- check_body --------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 63, 65, 128])
def test_an_anchor_of_the_wrong_dimension_is_refused(dim: int) -> None:
    unsigned = body()
    unsigned["kernels"][str(K0)]["anchor"] = [1.0 / dim] * dim if dim else []
    assert reason(signed(unsigned)) == "wrong dimension"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_anchor_is_refused_never_crashing(bad: float) -> None:
    # JSON cannot carry NaN (parse refuses it) and sign() cannot sign it (allow_nan=False): build
    # the dict directly with a dummy signature. It must raise Rejected, nothing else.
    message = signed()
    message["kernels"][str(K0)]["anchor"][5] = bad
    with pytest.raises(ValueError, match="JSON compliant"):
        packets.sign(message, KEY, "basin")
    got = reason(message)
    # The signature is checked before the anchor, and a body holding NaN has no canonical form,
    # so check_body says "bad signature" here (see the report); "not finite" is what the anchor
    # check itself says, below.
    assert got in ("not finite", "bad signature")
    with pytest.raises(Rejected) as caught:
        packets._update(str(K0), message["kernels"][str(K0)], HELD)
    assert caught.value.reason == "not finite"


@pytest.mark.parametrize("field", ["ts", "phi", "kappa"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_number_field_is_not_finite(field: str, bad: float) -> None:
    message = {**signed(), field: bad}
    assert reason(message) == "not finite"


@pytest.mark.parametrize("weight", [0.0, -1.0, packets.MAX_WEIGHT * 2])
def test_a_weight_out_of_range_is_refused(weight: float) -> None:
    unsigned = body()
    unsigned["kernels"][str(K0)]["weight"] = weight
    assert reason(signed(unsigned)) == "not finite"


@pytest.mark.parametrize("weight", ["120", None, True])
def test_a_weight_that_is_not_a_number_is_malformed(weight: Any) -> None:
    unsigned = body()
    unsigned["kernels"][str(K0)]["weight"] = weight
    assert reason(signed(unsigned)) == "malformed"


def _off_simplex(kind: str) -> list[float]:
    anchor = list(e8.anchor(K0))
    if kind == "negative":
        anchor[1] += anchor[0] + 0.001
        anchor[0] = -0.001  # still sums to 1
    elif kind == "sum high":
        anchor = [v * 1.01 for v in anchor]
    elif kind == "sum low":
        anchor = [v * 0.99 for v in anchor]
    elif kind == "just outside tolerance":
        anchor[0] += 3 * packets.SIMPLEX_TOL
    return anchor


@pytest.mark.parametrize("kind", ["negative", "sum high", "sum low", "just outside tolerance"])
def test_an_anchor_off_the_simplex_is_refused(kind: str) -> None:
    anchor = _off_simplex(kind)
    unsigned = body()
    unsigned["kernels"][str(K0)]["anchor"] = anchor
    assert reason(signed(unsigned)) == "not on the simplex"


def test_an_anchor_within_the_simplex_tolerance_is_taken() -> None:
    anchor = list(e8.anchor(K0))
    anchor[0] += packets.SIMPLEX_TOL / 2
    unsigned = body()
    unsigned["kernels"][str(K0)]["anchor"] = anchor
    check(signed(unsigned))


@pytest.mark.parametrize("key", ["240", "-1", "999", "abc", "057", " 5", "5.0", ""])
def test_a_kernel_key_outside_0_to_239_is_malformed(key: str) -> None:
    unsigned = body()
    unsigned["kernels"] = {key: unsigned["kernels"][str(K0)]}
    assert reason(signed(unsigned)) == "malformed"
    assert reason(signed(unsigned), held=None) == "malformed"


def test_a_kernel_the_node_does_not_hold_is_refused() -> None:
    other = next(k for k in range(packets.N_KERNELS) if k not in HELD)
    message = signed(body({other: (e8.anchor(other), 1.0)}))
    assert reason(message) == "kernel not held"
    assert check(message, held=None).updates[0].kernel == other  # no held set: any kernel
    # One foreign kernel spoils the packet, even beside a held one.
    both = signed(body({K0: (e8.anchor(K0), 1.0), other: (e8.anchor(other), 1.0)}))
    assert reason(both) == "kernel not held"


@pytest.mark.parametrize("offset", [-1000.0, -WINDOW - 0.01, WINDOW + 0.01, 1000.0])
def test_a_packet_outside_the_clock_window_is_stale(offset: float) -> None:
    assert reason(signed(ts=NOW + offset)) == "stale"


@pytest.mark.parametrize("offset", [-WINDOW + 0.01, 0.0, WINDOW - 0.01])
def test_a_packet_inside_the_clock_window_is_taken(offset: float) -> None:
    check(signed(ts=NOW + offset))


@pytest.mark.parametrize("v", [0, 2, "1", None, 1.5])
def test_another_protocol_version_is_refused(v: Any) -> None:
    message = resigned({**signed(), "v": v})
    assert reason(message) == "wrong protocol version"


@pytest.mark.parametrize(
    "field", ["type", "node", "id", "ts", "kernels", "delta", "constraints", "regime"]
)
def test_a_missing_field_is_malformed(field: str) -> None:
    message = signed()
    del message[field]
    assert reason(resigned(message)) == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "hello"),
        ("type", 1),
        ("node", 7),
        ("id", "not-a-uuid"),
        ("ts", "1765000000"),
        ("ts", True),
        ("kernels", []),
        ("delta", []),
        ("constraints", "x"),
        ("regime", "chaotic"),
        ("phi", "0.4"),
        ("kappa", False),
    ],
)
def test_a_field_of_the_wrong_shape_is_malformed(field: str, value: Any) -> None:
    assert reason(resigned({**signed(), field: value})) == "malformed"


def test_a_missing_signature_is_refused() -> None:
    message = signed()
    del message["sig"]
    assert reason(message) == "malformed"


def test_an_empty_packet_is_malformed() -> None:
    assert reason(signed(body({}))) == "malformed"
    # … and so is a body with nothing at all in it.
    with pytest.raises(Rejected) as caught:
        check({})
    assert caught.value.reason in ("malformed", "wrong protocol version")


def test_delta_only_packets_are_taken_and_their_lists_bounded() -> None:
    check(signed(body({}, delta={"patterns": ["3f2a" * 4]})))
    too_long = body({}, delta={"patterns": ["ab"] * (packets.MAX_LIST + 1)})
    assert len(too_long["delta"]["patterns"]) == packets.MAX_LIST  # basin_body trims
    too_long["delta"]["patterns"].append("ab")
    assert reason(signed(too_long)) == "malformed"
    long_hash = body({}, constraints={"failed": ["f" * (packets.MAX_HASH_CHARS + 1)]})
    assert reason(signed(long_hash)) == "malformed"
    not_a_list = body({}, delta={"patterns": ["ab"]})
    not_a_list["delta"]["patterns"] = "ab"
    assert reason(signed(not_a_list)) == "malformed"


@pytest.mark.parametrize(
    "message",
    [
        {"v": 1},
        {"v": 1, "kernels": None},
        {"v": 1, "sig": {"x": 1}},
        {"v": 1, "type": "basin", "kernels": {"57": 1}, "sig": "x"},
    ],
)
def test_check_body_never_raises_anything_but_rejected(message: dict[str, Any]) -> None:
    reason(message)


# ---- sizes ---------------------------------------------------------------------------------------
HASHES = [f"{i:016x}" for i in range(packets.MAX_LIST)]  # 64 hashes of 16 hex chars


def _largest_anchors() -> list[int]:
    """The 3 kernels whose anchors take the most characters on the wire."""
    width = {
        k: len(json.dumps(packets.wire_anchor(e8.anchor(k)), separators=(",", ":")))
        for k in range(packets.N_KERNELS)
    }
    return sorted(width, key=lambda k: (-width[k], k))[:3]


def _wire_size(kernels: dict[int, tuple[list[float], float]], **extra: Any) -> int:
    unsigned = packets.basin_body(
        str(uuid.uuid4()),
        kernels,
        phi=0.123456789,
        kappa=63.123456789,
        regime="geometric",
        **extra,
    )
    message = {"type": "packet", "packet": packets.stamp_and_sign(unsigned, KEY, time.time())}
    return len(packets.encoded(message).encode("utf-8"))


def test_split_kernels_groups_by_three_in_order() -> None:
    kernels = {k: (list(e8.anchor(k)), float(k + 1)) for k in (9, 1, 5, 3, 7, 2, 8)}
    groups = packets.split_kernels(kernels)
    assert [list(g) for g in groups] == [[1, 2, 3], [5, 7, 8], [9]]
    assert all(g[k][1] == k + 1 for g in groups for k in g)
    assert packets.split_kernels({}) == [{}]


def test_every_split_packet_of_real_anchors_fits_the_limit() -> None:
    kernels = {k: (list(e8.anchor(k)), 1e9 - 0.123457) for k in range(packets.N_KERNELS)}
    sizes = [_wire_size(group) for group in packets.split_kernels(kernels)]
    largest = max(sizes)
    print(f"largest split packet of 3 real anchors: {largest} bytes")
    assert largest <= packets.MAX_PACKET_BYTES


def test_pack_keeps_every_packet_under_the_limit_and_loses_nothing() -> None:
    """What `edge.enqueue` builds at worst: 7 kernels (the widest real anchors among them) and
    every delta and constraint list full, vocabulary words at the longest a packet allows."""
    top = _largest_anchors()
    others = [k for k in sorted(HELD | {0, 1, 2, 3}) if k not in top][:4]
    kernels = {k: (list(e8.anchor(k)), 1e9 - 0.123457) for k in [*top, *others]}
    words = [("w" * 60) + f"{i:04d}" for i in range(packets.MAX_LIST)]
    delta: dict[str, list[Any]] = {
        "patterns": HASHES, "reinforced": list(range(64)), "vocabulary": words
    }  # fmt: skip
    constraints: dict[str, list[Any]] = {"failed": HASHES, "low_phi": list(range(64))}
    bodies = packets.pack(str(uuid.uuid4()), kernels, phi=0.5, delta=delta,
                          constraints=constraints)  # fmt: skip
    sizes = []
    for body in bodies:
        message = {"type": "packet", "packet": packets.stamp_and_sign(body, KEY, time.time())}
        sizes.append(len(packets.encoded(message).encode("utf-8")))
    print(f"pack: {len(bodies)} packets, largest {max(sizes)} bytes: {sizes}")
    assert max(sizes) <= packets.MAX_PACKET_BYTES
    assert sorted(int(k) for b in bodies for k in b["kernels"]) == sorted(kernels)
    for group, lists in (("delta", delta), ("constraints", constraints)):
        for key, items in lists.items():
            assert [x for b in bodies for x in b[group].get(key, [])] == items, (group, key)
    # A string longer than a packet allows is left out, not sent to be refused.
    [only] = packets.pack("n", {}, delta={"vocabulary": ["x" * 65, "ok"]})
    assert only["delta"] == {"vocabulary": ["ok"]}


# ---- property ------------------------------------------------------------------------------------
simplex = st.lists(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False),
    min_size=packets.BASIN_DIM,
    max_size=packets.BASIN_DIM,
).filter(lambda xs: math.fsum(xs) > 1e-6)


@settings(max_examples=60, deadline=None)
@given(
    raw=simplex,
    kernel=st.sampled_from(sorted(HELD)),
    weight=st.floats(min_value=1e-6, max_value=packets.MAX_WEIGHT / 2),
    skew=st.floats(min_value=-WINDOW + 1, max_value=WINDOW - 1),
)
def test_any_simplex_anchor_round_trips(
    raw: list[float], kernel: int, weight: float, skew: float
) -> None:
    anchor = np.asarray(raw) / math.fsum(raw)
    unsigned = packets.basin_body(str(uuid.uuid4()), {kernel: (anchor, weight)})
    message = packets.stamp_and_sign(unsigned, KEY, NOW + skew)
    wire = packets.parse(packets.encoded({"type": "packet", "packet": message}))["packet"]
    packets.verify(wire, PUBLIC, "basin")
    packet = check(wire)
    [update] = packet.updates
    assert update.kernel == kernel
    assert update.anchor == packets.wire_anchor(anchor)
    np.testing.assert_allclose(update.anchor, anchor, atol=10**-packets.ANCHOR_DECIMALS)
    assert math.isclose(update.weight, weight, rel_tol=1e-6, abs_tol=1e-6)
