"""A node's high-value patterns from real learning signals in the test database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from constellation.interactions import Asked, record
from constellation.interactions import Client as Caller
from constellation.models import Interaction
from federation.patterns import HIGH_VALUE, Pattern, digest_of, high_value_patterns, make
from learning.improve import record_of
from learning.models import LearningSignal, SignalKind

pytestmark = pytest.mark.django_db


def answered(question: str, kernel: int | None = 5, response: str = "an answer") -> Interaction:
    asked = Asked(
        "app-chat",
        Caller(None, "patterns-test/1", "127.0.0.1"),
        prompt=f"user: {question}\nassistant:",
        messages=[{"role": "user", "content": question}],
    )
    return record(asked, "qig-constellation:latest", response, {"kernel": kernel}, "stop")


def signal(kind: str, item: Interaction, content: str = "", value: float = 0.9) -> LearningSignal:
    return LearningSignal.objects.create(
        kind=kind, value=value, reason="test", interaction=item, kernel_index=item.kernel,
        content=content,
    )  # fmt: skip


def test_corrections_and_approved_answers_as_the_loop_trains_on_them() -> None:
    fixed = signal(SignalKind.CORRECTION, answered("What is a deque?"), "A double-ended queue.")
    liked = signal(SignalKind.ACCEPTED, answered("2+2?", 7, "4"), value=0.8)
    found = high_value_patterns()
    assert [p.kernel for p in found] == [5, 7]
    assert found[0].prompt == record_of(fixed)["prompt"] == "user: What is a deque?\nassistant:"
    assert found[0].completion == record_of(fixed)["completion"] == " A double-ended queue."
    assert (found[0].kind, found[0].value) == ("correction", 0.9)
    assert (found[1].completion, found[1].kind, found[1].value) == (" 4", "accepted", 0.8)
    assert found[1].completion == record_of(liked)["completion"]
    for p in found:
        assert p.digest == digest_of(p.kernel, p.prompt, p.completion)


def test_low_value_and_other_kinds_are_left_out() -> None:
    item = answered("Why?")
    signal(SignalKind.ACCEPTED, item, value=0.6)  # a plain thumbs up: below HIGH_VALUE
    signal(SignalKind.REPEATED_QUERY, answered("Again?"), "Again?", value=1.0)
    signal(SignalKind.CONSTRAINT, answered("Rule?"), "never do that", value=1.0)
    assert high_value_patterns() == []
    LearningSignal.objects.filter(kind=SignalKind.ACCEPTED).update(value=HIGH_VALUE)
    assert [p.kind for p in high_value_patterns()] == ["accepted"]


def test_names_emails_and_secrets_are_anonymised(django_user_model) -> None:
    django_user_model.objects.create_user(
        username="grace", first_name="Grace", last_name="Hopper", password="x"
    )
    item = answered("Grace here, my key is sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW")
    signal(SignalKind.CORRECTION, item, "Ask Hopper at grace@navy.mil from 10.1.2.3.")
    [p] = high_value_patterns()
    assert p.prompt == "user: <user> here, my key is <secret>\nassistant:"
    assert p.completion == " Ask <user> at <email> from <ip>."
    assert p.digest == digest_of(5, p.prompt, p.completion)


def test_duplicates_keep_the_highest_value_and_the_order_is_stable() -> None:
    for value in (0.75, 0.95, 0.8):
        signal(SignalKind.CORRECTION, answered("Same?", 3), "Yes.", value=value)
    signal(SignalKind.CORRECTION, answered("Trunk?", None), "Kernel none.")
    signal(SignalKind.CORRECTION, answered("Other?", 200), "Two hundred.")
    signal(SignalKind.CORRECTION, answered("More?", 3), "Also three.")
    found = high_value_patterns()
    assert [p.kernel for p in found] == [3, 3, 200, None]
    assert [p.digest for p in found[:2]] == sorted(p.digest for p in found[:2])
    [same] = [p for p in found if p.completion == " Yes."]
    assert same.value == 0.95
    assert high_value_patterns() == found


def test_since_and_kernels_select() -> None:
    old = signal(SignalKind.CORRECTION, answered("Old?", 1), "Old.")
    LearningSignal.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    signal(SignalKind.CORRECTION, answered("New?", 2), "New.")
    assert [p.kernel for p in high_value_patterns(since=timezone.now() - timedelta(days=1))] == [2]
    assert [p.kernel for p in high_value_patterns(kernels=[1])] == [1]
    assert high_value_patterns(kernels=[]) == []


def test_imported_signals_carry_their_prompt_in_details_and_orphans_are_skipped() -> None:
    LearningSignal.objects.create(
        kind=SignalKind.CORRECTION, value=0.9, reason="imported", kernel_index=4,
        content=" Imported answer.", details={"prompt": "user: Imported?\nassistant:"},
    )  # fmt: skip
    LearningSignal.objects.create(  # its conversation was deleted: no prompt left
        kind=SignalKind.CORRECTION, value=0.9, reason="orphan", kernel_index=4, content="Lost."
    )
    [p] = high_value_patterns()
    assert (p.prompt, p.completion) == ("user: Imported?\nassistant:", " Imported answer.")


def test_a_pattern_round_trips_and_bad_dicts_are_refused_with_their_reason() -> None:
    good = make(9, "correction", "user: Q\nassistant:", " A", 0.9)
    assert Pattern.from_dict(good.as_dict()) == good
    assert Pattern.from_dict({**good.as_dict(), "value": 1}).value == 1.0
    bad = [
        ([], "JSON object"),
        ({k: v for k, v in good.as_dict().items() if k != "digest"}, "missing digest"),
        ({**good.as_dict(), "extra": 1}, "unknown extra"),
        ({**good.as_dict(), "kernel": 240}, "kernel"),
        ({**good.as_dict(), "kernel": True}, "kernel"),
        ({**good.as_dict(), "kernel": "9"}, "kernel"),
        ({**good.as_dict(), "kind": "rejected"}, "kind"),
        ({**good.as_dict(), "value": 0.5}, "value"),
        ({**good.as_dict(), "value": float("nan")}, "value"),
        ({**good.as_dict(), "value": "0.9"}, "value"),
        ({**good.as_dict(), "prompt": "x" * 8001}, "prompt"),
        ({**good.as_dict(), "prompt": None}, "prompt"),
        ({**good.as_dict(), "completion": ""}, "completion"),
        ({**good.as_dict(), "completion": "x" * 4001}, "completion"),
        ({**good.as_dict(), "digest": 5}, "digest"),
        ({**good.as_dict(), "completion": " B"}, "does not match"),
    ]
    for d, said in bad:
        with pytest.raises(ValueError, match=said):
            Pattern.from_dict(d)


def test_the_digest_is_canonical() -> None:
    assert digest_of(None, "p", "c") != digest_of(0, "p", "c")
    assert digest_of(1, "é", "c") == digest_of(1, "é", "c")
    assert len(digest_of(1, "p", "c")) == 32
