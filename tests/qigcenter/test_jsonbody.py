"""The one JSON reader (qigcenter.jsonbody): what Python's json accepts and no request may carry
is refused with a message that says what and where; the REST API answers it with 400."""

from __future__ import annotations

import pytest

from qigcenter import jsonbody


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"options": {"num_ctx": NaN}}', "options.num_ctx: NaN is not a JSON number"),
        ('{"x": [1, -Infinity]}', "x[1]: -Infinity is not a JSON number"),
        (
            '{"options": {"num_predict": 1e400}}',
            "options.num_predict: number 1e400 is out of range",
        ),
        (
            '{"seed": 1180591620717411303424}',
            "seed: integer 1180591620717411303424 is out of range",
        ),
        ('{"seed": -9223372036854775809}', "seed: integer -9223372036854775809 is out of range"),
        ("9" * 5000, "is out of range"),  # past 4,300 digits json itself raised ValueError
        ("[" * 10_000 + "]" * 10_000, "nested more than 64 levels deep"),  # RecursionError
        ("[" * 65 + "]" * 65, "nested more than 64 levels deep"),
        ('{"a": 1', "Expecting ',' delimiter (line 1 column 8)"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_what_no_request_may_carry_is_refused_saying_what_and_where(
    raw: str | bytes, message: str
) -> None:
    with pytest.raises(jsonbody.InvalidJSON) as refused:
        jsonbody.loads(raw)
    assert message in str(refused.value)


def test_what_requests_do_carry_is_read_as_json_reads_it() -> None:
    raw = '{"a": [1.5, -2, 18446744073709551615, -9223372036854775808, {"b": null}], "c": "é"}'
    assert jsonbody.loads(raw) == {
        "a": [1.5, -2, 2**64 - 1, -(2**63), {"b": None}],
        "c": "é",
    }
    assert jsonbody.loads("[" * 64 + "]" * 64) is not None
    assert jsonbody.depth({"a": [{"b": []}]}) == 4 and jsonbody.depth(3) == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [b"[" * 10_000 + b"]" * 10_000, b'{"username": "a", "password": NaN}', b'{"username": 1e999}'],
)
def test_the_rest_api_answers_hostile_json_with_400(anon_api, raw: bytes) -> None:
    answer = anon_api.post("/api/v1/auth/token/", raw, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"].startswith("JSON parse error - ")
