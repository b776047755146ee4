"""Learning signals (docs/training.md, "Learning signals"): each source makes its signal with its
value and links, once; `/api/v1/signals/` shows whom it concerns; deleting a conversation
anonymises its signals; the dashboard counts them.

In-process: interactions stored by the constellation's own recorder (`interactions.record`, as
every answer is), feedback through `POST /api/v1/interactions/<id>/feedback/`, the derivation
task run as the worker runs it, with the tiny coordizer trained on real text. Live: the real
product with a tiny trained model answers real chats, and its embedded worker derives the
signals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from constellation import published
from constellation.engine.tiny import make_trained_model
from constellation.interactions import Asked, record
from constellation.interactions import Client as Caller
from constellation.models import Conversation, Interaction
from dashboard.histories import learning_stats
from learning import tasks, usage_signals
from learning.models import LearningSignal, SignalKind
from tests.conftest import PASSWORD
from tests.inference.test_chat_api import chat_lines
from tests.learning.tiny import coordizer, save_coordizer
from tests.live.product import Product

KERNEL = 57


@pytest.fixture(autouse=True)
def models_dir(settings, tmp_path: Path) -> Path:
    """A models dir of the test's own: no coordizer unless the test publishes one."""
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def ask(
    user: User | None,
    question: str,
    *,
    conversation: Conversation | None = None,
    kernel: int = KERNEL,
    remote_addr: str = "127.0.0.1",
) -> Interaction:
    """One answered chat turn, stored as the constellation stores every answer."""
    asked = Asked(
        "app-chat",
        Caller(user.pk if user else None, "signals-test/1", remote_addr),
        prompt=f"user: {question}\nassistant:",
        messages=[{"role": "user", "content": question}],
    )
    stats = {"kernel": kernel, "route": [{"kernel": kernel, "role": "MEMORY", "distance": 0.8}]}
    return record(asked, "qig-constellation:latest", "an answer", stats, "stop", conversation)


def feedback(api: Any, item: Interaction, thumbs: str, suggested: str = "") -> None:
    answer = api.post(
        f"/api/v1/interactions/{item.pk}/feedback/",
        {"feedback": thumbs, "suggested_answer": suggested},
        format="json",
    )
    assert answer.status_code == 200, answer.content


def signals(item: Interaction) -> list[LearningSignal]:
    return list(LearningSignal.objects.filter(interaction=item).order_by("id"))


def derive(item: Interaction) -> list[int]:
    """What the worker does once the interaction is committed."""
    return tasks.derive_signals(item.pk)


# ---- feedback --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_thumbs_and_corrections_make_one_feedback_signal_that_changes_with_the_person(
    dev_api, developer
) -> None:
    item = ask(developer, "How do I open a TCP socket?")
    assert signals(item) == []  # an answer alone says nothing yet

    feedback(dev_api, item, "up")
    (accepted,) = signals(item)
    assert (accepted.kind, accepted.value) == (SignalKind.ACCEPTED, 0.6)
    assert accepted.interaction_id == item.pk and accepted.kernel_index == KERNEL
    assert accepted.user_id == developer.pk and accepted.reason and accepted.used_at is None

    feedback(dev_api, item, "down")  # changed their mind: replaced, not piled up
    (rejected,) = signals(item)
    assert rejected.pk == accepted.pk and rejected.kind == SignalKind.REJECTED
    assert rejected.value == 0.5 and rejected.created_at >= accepted.created_at
    feedback(dev_api, item, "down")  # the same click again changes nothing
    (same,) = signals(item)
    assert (same.kind, same.created_at) == (rejected.kind, rejected.created_at)

    better = "Use socket.create_connection((host, port))."
    feedback(dev_api, item, "down", better)
    (correction,) = signals(item)
    assert correction.kind == SignalKind.CORRECTION and correction.content == better
    assert correction.value > rejected.value
    assert correction.details == {"feedback": "down"}

    feedback(dev_api, item, "down", "Please don't answer with code I did not ask for.")
    (constraint,) = signals(item)
    assert constraint.kind == SignalKind.CONSTRAINT and constraint.value == 1.0
    assert constraint.content == "Please don't answer with code I did not ask for."

    LearningSignal.objects.filter(pk=constraint.pk).update(used_at=timezone.now())
    feedback(dev_api, item, "down", better)  # changed after a cycle used it: to be learned anew
    (again,) = signals(item)
    assert again.kind == SignalKind.CORRECTION and again.used_at is None

    feedback(dev_api, item, "")  # feedback taken back: no signal left
    assert signals(item) == []
    assert LearningSignal.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Never suggest eval() for parsing input.", SignalKind.CONSTRAINT),
        ("do not answer in French", SignalKind.CONSTRAINT),
        ("You shouldn't guess version numbers.", SignalKind.CONSTRAINT),
        ("you must never print passwords", SignalKind.CONSTRAINT),
        ("Avoid global state in these examples.", SignalKind.CONSTRAINT),
        ("Lists don't have push(); use append().", SignalKind.CORRECTION),
        ("Stop words are dropped before indexing.", SignalKind.CORRECTION),
        ("Nevertheless, the answer is 42.", SignalKind.CORRECTION),
    ],
)
def test_a_suggested_answer_that_opens_with_a_prohibition_is_a_constraint(
    text: str, kind: str
) -> None:
    item = Interaction(feedback="down", suggested_answer=text)
    assert usage_signals.feedback_of(item) == (kind, text)


# ---- repeated query --------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_same_question_again_within_the_window_marks_the_earlier_answer(
    developer, django_user_model, settings
) -> None:
    settings.SIGNAL_REPEAT_WINDOW_S = 600
    other = django_user_model.objects.create_user(username="other", password=PASSWORD)
    first = ask(developer, "What is a Python list?", kernel=12)
    ask(other, "what is a python list")  # someone else asking is no repeat
    unrelated = ask(developer, "How do sockets work?")
    again = ask(developer, "  what is a PYTHON list ")

    assert derive(unrelated) == []
    made = derive(again)
    (signal,) = LearningSignal.objects.filter(kind=SignalKind.REPEATED_QUERY)
    assert made == [signal.pk]
    assert signal.interaction_id == first.pk and signal.kernel_index == 12
    assert signal.user_id == developer.pk and signal.value == 0.4
    assert signal.content == "what is a PYTHON list"
    assert signal.details["asked_again_after_s"] >= 0 and signal.details["window_s"] == 600
    assert derive(again) == []  # the task delivered twice makes nothing new

    # Asked again long after: outside the window, no signal.
    late = ask(developer, "How do sockets work?")
    Interaction.objects.filter(pk=unrelated.pk).update(
        created_at=timezone.now() - timedelta(seconds=601)
    )
    assert derive(late) == []


@pytest.mark.django_db
def test_anonymous_api_clients_repeat_by_address_and_agent() -> None:
    first = ask(None, "hello there", remote_addr="10.0.0.7")
    ask(None, "hello there", remote_addr="10.0.0.8")
    again = ask(None, "Hello there!", remote_addr="10.0.0.7")
    derive(again)
    (signal,) = LearningSignal.objects.filter(kind=SignalKind.REPEATED_QUERY)
    assert signal.interaction_id == first.pk and signal.user_id is None


# ---- long session ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_conversation_reaching_n_turns_gives_one_long_session_signal(developer, settings) -> None:
    settings.SIGNAL_LONG_SESSION_TURNS = 3
    conversation = Conversation.objects.create(user=developer, title="sockets")
    # All five answered before any task runs: the third turn still gets the signal.
    turns = [ask(developer, f"question {n}", conversation=conversation) for n in range(5)]
    for turn in turns:
        derive(turn)
    (signal,) = LearningSignal.objects.filter(kind=SignalKind.LONG_SESSION)
    assert signal.interaction_id == turns[2].pk and signal.value == 0.3
    assert signal.details == {"conversation": conversation.pk, "turns": 3}
    assert "3 turns" in signal.reason
    for turn in turns:  # delivered again: still one
        derive(turn)
    assert LearningSignal.objects.filter(kind=SignalKind.LONG_SESSION).count() == 1
    # Turns outside any conversation (the Ollama and OpenAI endpoints) are no session.
    assert usage_signals.long_session(ask(developer, "question 9")) is None


# ---- unknown tokens --------------------------------------------------------------------------
@pytest.fixture
def tiny_coordizer(models_dir: Path) -> Path:
    return save_coordizer(models_dir)


@pytest.mark.django_db
def test_words_the_coordizer_splits_badly_are_a_vocabulary_gap(
    developer, settings, tiny_coordizer
) -> None:
    settings.SIGNAL_UNKNOWN_TOKENS = 4
    question = "How do I reverse a list in Qwxzvykjplm with Fjordbrqxt?"
    item = ask(developer, question)
    derive(item)
    (signal,) = LearningSignal.objects.filter(kind=SignalKind.UNKNOWN_TOKENS)

    words = ["How", "do", "I", "reverse", "a", "list", "in", "Qwxzvykjplm", "with", "Fjordbrqxt"]
    tokens = {w: len(coordizer().encode(" " + w)) for w in words}
    bad = [w for w in words if tokens[w] >= 4]
    assert "Qwxzvykjplm" in bad and "Fjordbrqxt" in bad and "a" not in bad
    assert signal.content == " ".join(bad)
    assert signal.details["tokens"] == {w: tokens[w] for w in bad}
    assert signal.value == round(len(bad) / len(words), 4)
    assert signal.interaction_id == item.pk and signal.kernel_index == KERNEL
    assert signal.user_id == developer.pk

    plain = ask(developer, "a a a")  # nothing split badly: no signal
    assert usage_signals.unknown_tokens(plain) is None
    digits = ask(developer, "12345 67890 !!!")  # no words of letters
    assert usage_signals.unknown_tokens(digits) is None


@pytest.mark.django_db
def test_the_coordizer_is_loaded_once_per_published_version() -> None:
    assert usage_signals.current_coordizer() is None  # none published yet: no signal, no error
    published.publish_coordizer(coordizer())
    first = usage_signals.current_coordizer()
    assert first is not None and usage_signals.current_coordizer() is first
    published.publish_coordizer(coordizer())  # a new version
    second = usage_signals.current_coordizer()
    assert second is not None and second is not first


# ---- anonymisation ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_deleting_a_conversation_keeps_its_signals_anonymised(
    dev_api, developer, settings, tiny_coordizer
) -> None:
    settings.SIGNAL_LONG_SESSION_TURNS = 3
    conversation = Conversation.objects.create(user=developer, title="lists")
    first = ask(developer, "What is a Qwxzvykjplm list?", conversation=conversation)
    second = ask(developer, "what is a qwxzvykjplm list", conversation=conversation)
    third = ask(developer, "thanks", conversation=conversation)
    for turn in (first, second, third):
        derive(turn)
    feedback(dev_api, second, "down", "A list is an ordered, mutable sequence.")
    feedback(dev_api, third, "up")
    before = {s.kind: s for s in LearningSignal.objects.all()}
    assert set(before) == {
        *(SignalKind.REPEATED_QUERY, SignalKind.LONG_SESSION, SignalKind.UNKNOWN_TOKENS),
        *(SignalKind.CORRECTION, SignalKind.ACCEPTED),
    }
    elsewhere = ask(developer, "What is a Qwxzvykjplm list?")  # not in the conversation
    derive(elsewhere)

    assert dev_api.delete(f"/api/v1/conversations/{conversation.pk}/").status_code == 204
    assert not Interaction.objects.filter(conversation_id=conversation.pk).exists()
    after = {s.kind: s for s in LearningSignal.objects.exclude(interaction=elsewhere)}
    assert set(after) == set(before)  # nothing deleted
    for kind, signal in after.items():
        assert signal.interaction_id is None and signal.user_id is None, kind
        assert (signal.value, signal.kernel_index) == (before[kind].value, KERNEL)
    # The learning material stays; what only pointed at the person's conversation goes.
    assert after[SignalKind.CORRECTION].content == "A list is an ordered, mutable sequence."
    assert after[SignalKind.UNKNOWN_TOKENS].content == before[SignalKind.UNKNOWN_TOKENS].content
    assert after[SignalKind.REPEATED_QUERY].content == ""
    assert after[SignalKind.REPEATED_QUERY].details == {}
    assert after[SignalKind.LONG_SESSION].details == {}
    # The signal of the interaction outside the conversation keeps its links.
    kept = LearningSignal.objects.get(interaction=elsewhere)
    assert kept.user_id == developer.pk and kept.kind == SignalKind.UNKNOWN_TOKENS


# ---- the API ---------------------------------------------------------------------------------
def listed(api: Any, **query: Any) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/signals/", query)
    assert answer.status_code == 200, answer.content
    return list(answer.json()["results"])


@pytest.mark.django_db
def test_the_signals_api_shows_staff_everything_and_users_their_own(
    dev_api, developer, admin_api, anon_api, django_user_model, settings
) -> None:
    other = django_user_model.objects.create_user(username="other", password=PASSWORD)
    mine, theirs = ask(developer, "q1", kernel=3), ask(other, "q2", kernel=9)
    clients = ask(None, "q3")  # an API client's: no user
    feedback(dev_api, mine, "up")
    for item, thumbs in ((theirs, "down"), (clients, "up")):
        feedback(admin_api, item, thumbs)
    by_kernel = {s.kernel_index: s for s in LearningSignal.objects.all()}

    assert anon_api.get("/api/v1/signals/").status_code == 401
    rows = dev_api.get("/api/v1/signals/").json()["results"]
    assert [r["id"] for r in rows] == [by_kernel[3].pk]
    row = rows[0]
    assert set(row) == {
        *("id", "kind", "value", "reason", "interaction", "kernel_index", "username"),
        *("content", "details", "created_at", "used_at"),
    }
    assert (row["kind"], row["value"], row["interaction"], row["username"]) == (
        "accepted",
        0.6,
        mine.pk,
        "dev",
    )
    assert dev_api.get(f"/api/v1/signals/{by_kernel[9].pk}/").status_code == 404
    assert dev_api.get(f"/api/v1/signals/{by_kernel[3].pk}/").json()["id"] == by_kernel[3].pk

    everything = admin_api.get("/api/v1/signals/").json()
    assert everything["count"] == 3
    assert [r["kind"] for r in listed(admin_api, kind="rejected")] == ["rejected"]
    assert [r["kernel_index"] for r in listed(admin_api, kernel=9)] == [9]
    LearningSignal.objects.filter(pk=by_kernel[9].pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = listed(admin_api, since=since)
    assert {r["id"] for r in recent} == {by_kernel[3].pk, by_kernel[KERNEL].pk}

    for field, value in (("kind", "praise"), ("kernel", 240), ("since", "soon")):
        bad = admin_api.get("/api/v1/signals/", {field: value})
        assert bad.status_code == 400 and field in bad.json(), bad.content
    assert admin_api.post("/api/v1/signals/", {}, format="json").status_code == 405
    assert admin_api.delete(f"/api/v1/signals/{by_kernel[3].pk}/").status_code == 405


@pytest.mark.django_db
def test_signals_are_listed_in_the_admin(admin_user, developer, dev_api) -> None:
    feedback(dev_api, ask(developer, "q"), "down", "Never guess.")
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get("/admin/learning/learningsignal/")
    assert page.status_code == 200 and b"constraint" in page.content
    assert browser.get("/admin/learning/learningsignal/add/").status_code == 403


# ---- the dashboard ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_learning_stats_count_signals_by_kind_over_24_hours(dev_api, developer) -> None:
    items = [ask(developer, f"q{n}") for n in range(4)]
    feedback(dev_api, items[0], "up")
    feedback(dev_api, items[1], "up")
    feedback(dev_api, items[2], "down", "It is 42.")
    feedback(dev_api, items[3], "down")
    LearningSignal.objects.filter(interaction=items[3]).update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    counts = learning_stats()["signals_last_24h"]
    assert counts == {
        **dict.fromkeys(SignalKind.values, 0),
        SignalKind.ACCEPTED: 2,
        SignalKind.CORRECTION: 1,
    }
    message = usage_signals.signal_message(LearningSignal.objects.earliest("id"), "created", None)
    assert message["kind"] == "learning.signal" and message["counts_last_24h"] == counts
    assert "content" not in message and "user" not in message  # every signed-in user hears it


# ---- live: real chats, the embedded worker ---------------------------------------------------
@pytest.fixture(scope="module")
def product(
    tmp_path_factory: pytest.TempPathFactory, module_database: dict[str, str]
) -> Iterator[Product]:
    data_dir = tmp_path_factory.mktemp("signals")
    make_trained_model(data_dir)
    env = {**module_database, "QIG_SIGNAL_LONG_SESSION_TURNS": "3"}
    server = Product(data_dir, **env).start(120)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def signed_in(product: Product) -> httpx.Client:
    client = product.signin()  # the admin: staff, who sees every signal
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.timeout = httpx.Timeout(60)
    return client


def wait_for_signals(
    client: httpx.Client, want: set[str], interactions: range, timeout: float = 30
) -> list[dict]:
    """The signals on `interactions` (this test's), once every kind in `want` is among them (in
    services mode the live products share one PostgreSQL database: other tests' rows are there)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = client.get("/api/v1/signals/", params={"page_size": 200}).json()["results"]
        rows = [r for r in rows if r["interaction"] in interactions]
        if want <= {r["kind"] for r in rows}:
            return rows
        assert time.monotonic() < deadline, f"signals {want} not all made: {rows}"
        time.sleep(0.1)


@pytest.mark.live
@pytest.mark.timeout(240)
def test_real_chats_give_their_signals_through_the_product(product: Product) -> None:
    client = signed_in(product)
    options = {"num_predict": 8}
    first = chat_lines(client, {"content": "Tell me about Qwxzvykjplm lists", "options": options})
    conversation = first[0]["conversation"]["id"]
    answer = first[-1]["message"]
    again = {"conversation": conversation, "content": "tell me about qwxzvykjplm lists"}
    chat_lines(client, {**again, "options": options})
    third = chat_lines(
        client, {"conversation": conversation, "content": "thanks", "options": options}
    )[-1]["message"]
    reply = client.post(
        f"/api/v1/interactions/{answer['id']}/feedback/",
        json={"feedback": "down", "suggested_answer": "A list keeps its items in order."},
    )
    assert reply.status_code == 200, reply.text
    thumbs = client.post(f"/api/v1/interactions/{third['id']}/feedback/", json={"feedback": "up"})
    assert thumbs.status_code == 200, thumbs.text

    kinds = {"correction", "accepted", "repeated_query", "long_session", "unknown_tokens"}
    ours = range(answer["id"], third["id"] + 1)
    rows = wait_for_signals(client, kinds, ours)  # derived by the worker, off the request
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["correction"]["interaction"] == answer["id"]
    assert by_kind["correction"]["kernel_index"] == answer["kernel"]
    assert by_kind["repeated_query"]["interaction"] == answer["id"]
    assert by_kind["long_session"]["interaction"] == third["id"]
    gaps = [r for r in rows if r["kind"] == "unknown_tokens"]
    assert any(r["interaction"] == answer["id"] and "Qwxzvykjplm" in r["content"] for r in gaps)
    assert all(r["username"] == "admin" for r in rows)

    assert client.delete(f"/api/v1/conversations/{conversation}/").status_code == 204
    listed = client.get("/api/v1/signals/", params={"page_size": 200}).json()["results"]
    kept = [r for r in listed if r["id"] in {row["id"] for row in rows}]  # this test's
    assert len(kept) == len(rows)  # none deleted
    assert all(r["interaction"] is None and r["username"] is None for r in kept)
    correction = next(r for r in kept if r["kind"] == "correction")
    assert correction["content"] == "A list keeps its items in order."
