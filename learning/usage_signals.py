"""Learning signals from people's use of the constellation (docs/training.md, "Learning signals").

The constellation records interactions and knows nothing of learning: this module listens to
`Interaction` rows being saved and deleted (connected in `LearningConfig.ready`).

- Feedback (`constellation.interactions.give_feedback` saves `feedback`/`suggested_answer` with
  `update_fields`) becomes the interaction's one feedback signal — accepted, rejected, correction
  or constraint — at once, in the request: one upsert. Changing one's mind replaces it.
- A new interaction is looked at once it is committed, off the request path, by the Celery task
  `learning.tasks.derive_signals`: repeated query, long session, unknown tokens.
- A deleted interaction (its conversation deleted) leaves its signals anonymised, not deleted.

Every signal carries a value in [0, 1] and its reason from `WORTH` (the documented table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from constellation.models import Conversation, Feedback, Interaction
from dashboard.services import publish_on_commit
from learning.models import FEEDBACK_KINDS, LearningSignal, SignalKind
from qigcenter.celery import app as celery_app

if TYPE_CHECKING:
    from constellation.engine import Coordizer

DERIVE_SIGNALS = "learning.tasks.derive_signals"
DAY = timedelta(hours=24)
REPEAT_CANDIDATES = 50  # a person's latest interactions compared with a new question


@dataclass(frozen=True)
class Worth:
    value: float
    reason: str


# What each signal is worth to learning: how directly it says what to learn (docs/training.md).
WORTH: dict[str, Worth] = {
    SignalKind.CONSTRAINT: Worth(1.0, "a rule a person stated about answers: to be kept"),
    SignalKind.CORRECTION: Worth(0.9, "a better answer given: a prompt → completion to learn"),
    SignalKind.ACCEPTED: Worth(0.6, "thumbs up: the answer can be reinforced as it is"),
    SignalKind.REJECTED: Worth(0.5, "thumbs down: the answer is wrong, but not what is right"),
    SignalKind.REPEATED_QUERY: Worth(0.4, "asked again {after:.0f} s later: the answer missed"),
    SignalKind.LONG_SESSION: Worth(0.3, "the conversation reached {turns} turns: engaged use"),
}

# A suggested answer that opens with a prohibition is a rule about answering, not an answer:
# "never …", "don't …", "do not …", "avoid …", "you should not / must not / shouldn't …",
# optionally after "please".
PROHIBITION = re.compile(
    r"^\W*(?:please\W+)?"
    r"(?:never|don[’']?t|do\s+not|avoid|(?:you|it)\s+(?:should|must|shall)(?:\s+not|n[’']?t|\s+never))\b",
    re.IGNORECASE,
)
LETTER_WORD = re.compile(r"[^\W\d_]+")  # a run of letters (any script)


# ---- what an interaction says ------------------------------------------------------------------
def question_of(item: Interaction) -> str:
    """The person's question: the last user message of a chat, else the prompt."""
    for message in reversed(item.messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return item.prompt


def normalised(text: str) -> str:
    """Case, punctuation and spacing aside: `What is a list?` ≡ `what is a list`."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def feedback_of(item: Interaction) -> tuple[str, str] | None:
    """(kind, content) of the feedback the interaction holds now, None when it holds none."""
    text = item.suggested_answer.strip()
    if text:
        return (SignalKind.CONSTRAINT if PROHIBITION.match(text) else SignalKind.CORRECTION), text
    if item.feedback == Feedback.UP:
        return SignalKind.ACCEPTED, ""
    if item.feedback == Feedback.DOWN:
        return SignalKind.REJECTED, ""
    return None


# ---- telemetry ---------------------------------------------------------------------------------
def signal_message(
    signal: LearningSignal, action: str, was: str | None, pk: int | None = None
) -> dict[str, Any]:
    """The `learning` topic's payload for a signal created, changed or removed; it carries the
    counts of the last 24 hours (measured, so the dashboard never adds up on its own). No content
    and no user: every signed-in user hears it."""
    return {
        "kind": "learning.signal",
        "action": action,
        "id": signal.pk if pk is None else pk,
        "signal_kind": None if action == "removed" else signal.kind,
        "was": was,
        "value": signal.value,
        "kernel": signal.kernel_index,
        "created_at": signal.created_at.isoformat(),
        "counts_last_24h": LearningSignal.objects.counts_by_kind(timezone.now() - DAY),
    }


# ---- feedback: in the request ------------------------------------------------------------------
def record_feedback(interaction_id: int) -> LearningSignal | None:
    """Make the interaction's feedback signal what its feedback is now: created, replaced (same
    row: new kind, content and time, unconsumed again), kept (nothing changed) or removed (the
    feedback was cleared). The interaction's row is locked, so two clicks at once end as one."""
    with transaction.atomic():
        item = Interaction.objects.select_for_update().filter(pk=interaction_id).first()
        if item is None:
            return None
        wanted = feedback_of(item)
        current = LearningSignal.objects.filter(interaction=item, kind__in=FEEDBACK_KINDS).first()
        if wanted is None:
            if current is not None:
                pk = current.pk
                current.delete()
                publish_on_commit("learning", signal_message(current, "removed", current.kind, pk))
            return None
        kind, content = wanted
        details = {"feedback": item.feedback}
        now = (kind, content, details)
        if current is not None and (current.kind, current.content, current.details) == now:
            return current
        was = current.kind if current is not None else None
        signal = current or LearningSignal(interaction=item)
        worth = WORTH[kind]
        signal.kind, signal.value, signal.reason = kind, worth.value, worth.reason
        signal.content, signal.details = content, details
        signal.kernel_index, signal.user_id = item.kernel, item.user_id
        signal.created_at, signal.used_at = timezone.now(), None
        signal.save()
        publish_on_commit("learning", signal_message(signal, "changed" if was else "created", was))
    return signal


# ---- a new interaction: off the request path ---------------------------------------------------
def derive_usage_signals(interaction_id: int) -> list[LearningSignal]:
    """The repeated-query, long-session and unknown-token signals a new interaction gives (each
    made once: running this twice makes nothing new). Nothing when it was deleted meanwhile."""
    item = Interaction.objects.filter(pk=interaction_id).first()
    if item is None:
        return []
    made = (repeated_query(item), long_session(item), unknown_tokens(item))
    return [signal for signal in made if signal is not None]


def create_once(
    item: Interaction, kind: str, worth: Worth, content: str, details: dict[str, Any]
) -> LearningSignal | None:
    """A signal of `kind` for `item`, unless it has one already (then None)."""
    try:
        with transaction.atomic():
            signal, created = LearningSignal.objects.get_or_create(
                interaction=item,
                kind=kind,
                defaults={
                    "value": worth.value,
                    "reason": worth.reason,
                    "kernel_index": item.kernel,
                    "user_id": item.user_id,
                    "content": content,
                    "details": details,
                },
            )
            if created:
                publish_on_commit("learning", signal_message(signal, "created", None))
    except IntegrityError:  # made at the same moment by another worker
        return None
    return signal if created else None


def same_person(item: Interaction) -> dict[str, Any]:
    """Who asked: the signed-in user, or for an anonymous API client its address and agent."""
    if item.user_id is not None:
        return {"user_id": item.user_id}
    return {"user__isnull": True, "remote_addr": item.remote_addr, "user_agent": item.user_agent}


def repeated_query(item: Interaction) -> LearningSignal | None:
    """The same person asked the same question (normalised) again within the window: the signal
    goes to the earlier answer, the one that did not do."""
    question = normalised(question_of(item))
    if not question:
        return None
    window = timedelta(seconds=settings.SIGNAL_REPEAT_WINDOW_S)
    earlier = Interaction.objects.filter(
        **same_person(item),
        created_at__gte=item.created_at - window,
        created_at__lte=item.created_at,
        pk__lt=item.pk,
    ).order_by("-created_at", "-id")[:REPEAT_CANDIDATES]
    for previous in earlier:
        if normalised(question_of(previous)) == question:
            after = (item.created_at - previous.created_at).total_seconds()
            worth = WORTH[SignalKind.REPEATED_QUERY]
            return create_once(
                previous,
                SignalKind.REPEATED_QUERY,
                Worth(worth.value, worth.reason.format(after=after)),
                question_of(item).strip(),
                {"asked_again_after_s": round(after, 3), "window_s": window.total_seconds()},
            )
    return None


def long_session(item: Interaction) -> LearningSignal | None:
    """The conversation has reached `SIGNAL_LONG_SESSION_TURNS` turns: one signal for the whole
    conversation, on its N-th turn."""
    if item.conversation_id is None:
        return None
    needed = settings.SIGNAL_LONG_SESSION_TURNS
    with transaction.atomic():  # the conversation locked: two turns at once make one signal
        if Conversation.objects.select_for_update().filter(pk=item.conversation_id).first() is None:
            return None
        # Its turns up to this one: the N-th turn gets the signal, however late its task runs.
        turns = Interaction.objects.filter(
            conversation_id=item.conversation_id, pk__lte=item.pk
        ).count()
        if (
            turns < needed
            or LearningSignal.objects.filter(
                kind=SignalKind.LONG_SESSION, interaction__conversation_id=item.conversation_id
            ).exists()
        ):
            return None
        worth = WORTH[SignalKind.LONG_SESSION]
        return create_once(
            item,
            SignalKind.LONG_SESSION,
            Worth(worth.value, worth.reason.format(turns=turns)),
            "",
            {"conversation": item.conversation_id, "turns": turns},
        )


def unknown_tokens(item: Interaction) -> LearningSignal | None:
    """Words of the question that the published coordizer splits badly (at least
    `SIGNAL_UNKNOWN_TOKENS` tokens for one word of letters, as it appears after a space): a
    vocabulary gap. Its value is the share of the question's words that split badly."""
    words = list(dict.fromkeys(LETTER_WORD.findall(question_of(item))))
    coordizer = current_coordizer() if words else None
    if coordizer is None:
        return None
    counts = [len(ids) for ids in coordizer.encode_batch([" " + word for word in words])]
    least = settings.SIGNAL_UNKNOWN_TOKENS
    bad = {word: n for word, n in zip(words, counts, strict=True) if n >= least}
    if not bad:
        return None
    reason = f"{len(bad)} of {len(words)} words split into ≥ {least} tokens: a vocabulary gap"
    details = {"tokens": bad, "words": len(words), "vocab_size": coordizer.vocab_size}
    worth = Worth(round(len(bad) / len(words), 4), reason)
    return create_once(item, SignalKind.UNKNOWN_TOKENS, worth, " ".join(bad), details)


def current_coordizer() -> Coordizer | None:
    """The published coordizer, loaded once per version (None before the first one)."""
    # Imported here: the published layout loads PyTorch, which the web process's start-up
    # (where this module is imported for its receivers) does without.
    from constellation import published

    tokenizer = published.coordizer_dir() / "tokenizer.json"
    try:
        mtime_ns = tokenizer.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _coordizer(str(tokenizer.resolve().parent), mtime_ns)


@lru_cache(maxsize=2)
def _coordizer(version: str, mtime_ns: int) -> Coordizer:
    """Keyed by the version's own directory (`published` writes each version apart) and the
    tokenizer file's time (a coordizer written in place)."""
    from constellation import published

    return published.load_coordizer()


# ---- receivers (connected in LearningConfig.ready) ---------------------------------------------
FEEDBACK_FIELDS = {"feedback", "suggested_answer"}


def on_interaction_saved(
    sender: type[Interaction],
    instance: Interaction,
    created: bool,
    update_fields: frozenset[str] | None,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    """`post_save` of an interaction: a new one is looked at once committed (a Celery task);
    a save that wrote feedback (or any save without `update_fields`) updates its feedback
    signal."""
    if raw:  # loaddata
        return
    if created:
        pk = instance.pk
        transaction.on_commit(lambda: celery_app.send_task(DERIVE_SIGNALS, args=[pk]), robust=True)
        if not (instance.feedback or instance.suggested_answer):
            return
    if update_fields is None or FEEDBACK_FIELDS & set(update_fields):
        record_feedback(instance.pk)


def on_interaction_deleted(sender: type[Interaction], instance: Interaction, **kwargs: Any) -> None:
    """`pre_delete` of an interaction (its conversation deleted, most often): its signals stay,
    anonymised; the interaction link itself goes with the row (SET_NULL)."""
    LearningSignal.objects.filter(interaction=instance).anonymise()
