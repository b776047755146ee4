"""The record of every answered request (`Interaction`): who asked what on which endpoint, what
was answered, what routed and measured it (`routed`: the route entries, the answering kernel first
with `answered_by` and the `reason`); the dashboard hears of each row once it is committed.
Feedback on an answer is written here too."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from constellation.models import Conversation, Interaction
from dashboard.services import publish_on_commit
from qigcenter.dbthreads import usable_connections

if TYPE_CHECKING:
    from constellation.streaming import Generation, Piece

log = logging.getLogger(__name__)


@dataclass
class Client:
    user_id: int | None
    user_agent: str
    remote_addr: str


@dataclass
class Asked:
    """What an interaction keeps of its request: the endpoint, the client, and the prompt
    and/or the messages as the endpoint records them."""

    endpoint: str
    client: Client
    prompt: str = ""
    messages: list[dict[str, Any]] | None = None


def record(
    asked: Asked,
    model: str,
    response: str,
    stats: dict[str, Any],
    done_reason: str,
    conversation: Conversation | None = None,
) -> Interaction:
    """Store one answered request (a turn of `conversation`, whose activity time moves on) and
    tell the dashboard once it is committed."""
    usable_connections()  # often the sync thread of no request (`record_after`)
    client = asked.client
    with transaction.atomic():
        item = Interaction.objects.create(
            endpoint=asked.endpoint,
            model=model,
            messages=asked.messages or [],
            prompt=asked.prompt,
            response=response,
            kernel=stats.get("kernel"),
            routed=stats.get("route", []),
            phi=stats.get("phi"),
            kappa=stats.get("kappa"),
            regime=stats.get("regime", ""),
            done_reason=done_reason,
            prompt_tokens=stats.get("prompt_eval_count", 0),
            completion_tokens=stats.get("eval_count", 0),
            total_duration_ns=stats.get("total_duration", 0),
            load_duration_ns=stats.get("load_duration", 0),
            prompt_eval_duration_ns=stats.get("prompt_eval_duration", 0),
            eval_duration_ns=stats.get("eval_duration", 0),
            user_agent=client.user_agent[:300],
            remote_addr=client.remote_addr[:64],
            user_id=client.user_id,
            conversation=conversation,
        )
        if conversation is not None:
            conversation.save(update_fields=["updated_at"])
        publish_on_commit("interactions", interaction_event(item))
    return item


_recording: set[asyncio.Task[None]] = set()  # interactions being stored after their response


def record_after(gen: Generation, asked: Asked, model: str, response: str, final: Piece) -> None:
    """`record` an answer (its text and its done piece) once its response has ended: Φ/κ from
    the hidden states, then the row, in the sync thread, off the client's stream (the Ollama and
    OpenAI endpoints, whose done lines carry no Φ/κ: their clients see the end of the stream ~5 ms
    sooner). Runs as a task of the event loop with a context of its own (not the finished
    request's thread); a failure is logged. Call from the event loop."""

    def store() -> None:
        stats = {**final.stats, **gen.reading()}
        record(asked, model, response, stats, final.done_reason)

    async def run() -> None:
        await sync_to_async(store)()

    task = asyncio.get_running_loop().create_task(run(), context=contextvars.Context())
    _recording.add(task)
    task.add_done_callback(_recorded)


async def drain() -> None:
    """Wait until the interactions this event loop is still storing after their responses are
    stored (a test ending its loop, or a server stopping, must not leave one half-written: its
    thread would wait for the closed loop forever and hold the sync thread every later
    `sync_to_async` call needs)."""
    loop = asyncio.get_running_loop()
    while pending := [t for t in _recording if t.get_loop() is loop]:
        await asyncio.gather(*pending, return_exceptions=True)


def _recorded(task: asyncio.Task[None]) -> None:
    _recording.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("storing an interaction failed", exc_info=task.exception())


def interaction_event(item: Interaction) -> dict[str, Any]:
    return {
        "kind": "interaction.created",
        "event": "interaction.created",
        "time": timezone.now().isoformat(),
        "id": item.pk,
        "model": item.model,
        "kernel": item.kernel,
        "phi": item.phi,
        "kappa": item.kappa,
        "regime": item.regime,
        "completion_tokens": item.completion_tokens,
        "created_at": item.created_at.isoformat(),
    }


def give_feedback(item: Interaction, feedback: str, suggested_answer: str) -> Interaction:
    item.feedback = feedback
    item.suggested_answer = suggested_answer
    item.feedback_at = timezone.now()
    item.save(update_fields=["feedback", "suggested_answer", "feedback_at"])
    return item
