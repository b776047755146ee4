"""Rounds of federated adapter averaging on central (docs/flower.md, "Starting a round"): create
one, start its Flower run, and what the ServerApp writes as it goes (`begin`, `record`,
`gating`, `complete`, `fail`).

The ServerApp runs in a process of Flower's, not in the web process; it writes the row, and the
web process that started the round watches the row and publishes every change on the dashboard's
`federation` topic as a `federation.round` message (docs/telemetry.md), in both modes (the
embedded mode's channel layer lives in the web process alone).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from federation.flower.models import ACTIVE, TERMINAL, FlowerRound, RoundStatus, fail

log = logging.getLogger(__name__)
MAX_KERNELS = 12
MAX_ROUNDS = 50
MAX_EDGES = 1000


class Conflict(RuntimeError):
    """The round cannot start now (409): this node runs no SuperLink, one is running, …"""


class Unavailable(RuntimeError):
    """The SuperLink did not take the run (503)."""


def message(row: FlowerRound) -> dict[str, Any]:
    return {"kind": "federation.round", **row.as_dict()}


def create(kernels: list[int], min_edges: int, rounds: int, user: Any = None) -> FlowerRound:
    """A queued round (its fields validated by the API's serializer); Conflict when it cannot
    run on this node now."""
    from constellation import published

    if settings.FEDERATION != "central" or not settings.FLOWER:
        raise Conflict(
            "this node runs no Flower SuperLink: start central with QIG_FEDERATION=central "
            "and QIG_FLOWER=1"
        )
    if not published.has_trunk():
        raise Conflict(f"central has no trained model yet: {published.bootstrap_progress()}")
    with transaction.atomic():
        running = FlowerRound.objects.select_for_update().filter(status__in=ACTIVE).first()
        if running is not None:
            raise Conflict(f"round {running.pk} is {running.status}: one round at a time")
        return FlowerRound.objects.create(
            kernels=sorted(set(kernels)), min_edges=min_edges, rounds=rounds,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )  # fmt: skip


def start(row: FlowerRound) -> FlowerRound:
    """Unregister revoked nodes' keys, then `flwr run` the round; Unavailable (the row failed)
    when the SuperLink does not take it."""
    from federation.flower import enrol, link

    try:
        allowed = enrol.sync_allow_list()
        if len(allowed) < row.min_edges:
            raise link.FlowerError(
                f"{len(allowed)} edge(s) have registered a SuperNode key, the round needs "
                f"{row.min_edges} (an edge registers when it starts with QIG_FLOWER=1)"
            )
        run_id = link.start_run(row.pk)
    except link.FlowerError as exc:
        fail(row.pk, str(exc))
        raise Unavailable(str(exc)) from None
    FlowerRound.objects.filter(pk=row.pk, status=RoundStatus.QUEUED).update(run_id=run_id)
    row.refresh_from_db()
    return row


# ---- written by the ServerApp -----------------------------------------------------------------
def _update(round_id: int, **fields: Any) -> FlowerRound:
    with transaction.atomic():
        row = FlowerRound.objects.select_for_update().get(pk=round_id)
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()
    return row


def begin(round_id: int, run_id: str) -> FlowerRound:
    row = FlowerRound.objects.get(pk=round_id)
    if row.status != RoundStatus.QUEUED:
        raise RuntimeError(f"round {round_id} is {row.status}, not queued: not run twice")
    return _update(round_id, status=RoundStatus.RUNNING, run_id=run_id, started_at=timezone.now())


def record(round_id: int, entry: dict[str, Any]) -> None:
    """One Flower round's figures, appended to the history."""
    with transaction.atomic():
        row = FlowerRound.objects.select_for_update().get(pk=round_id)
        row.history = [*row.history, {**entry, "at": timezone.now().isoformat()}]
        row.save(update_fields=["history", "updated_at"])


def gating(round_id: int) -> None:
    _update(round_id, status=RoundStatus.GATING)


def set_result(round_id: int, result: dict[str, Any]) -> None:
    _update(round_id, result=result)


def complete(round_id: int, result: dict[str, Any]) -> None:
    _update(round_id, status=RoundStatus.COMPLETED, result=result, finished_at=timezone.now())


# ---- watched by the web process ---------------------------------------------------------------
def budget_s(row: FlowerRound) -> float:
    per_round = settings.FLOWER_ROUND_TIMEOUT_S + settings.FLOWER_WAIT_S
    return len(row.kernels) * row.rounds * per_round + 900.0


def watch(round_id: int, poll_s: float = 0.5) -> threading.Thread:
    """Publish the round's row on every change until it is done (a daemon thread)."""

    def run() -> None:
        from dashboard.services import publish

        seen: tuple[Any, ...] | None = None
        deadline = None
        try:
            while True:
                close_old_connections()
                row = FlowerRound.objects.filter(pk=round_id).first()
                if row is None:
                    return
                deadline = deadline or time.monotonic() + budget_s(row)
                stamp = (row.status, row.updated_at, len(row.history))
                if stamp != seen:
                    publish("federation", message(row))
                    seen = stamp
                if row.status in TERMINAL:
                    _announce(row)
                    return
                if time.monotonic() > deadline:
                    fail(
                        round_id, "the round ran past its time budget (no word from its ServerApp)"
                    )
                    continue
                time.sleep(poll_s)
        except Exception:
            log.exception("flower round %s: watching it failed", round_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=f"flower-round-{round_id}", daemon=True)
    thread.start()
    return thread


def _announce(row: FlowerRound) -> None:
    """Embedded mode: the ServerApp's announcement of its bundle stayed in its own process;
    the web process tells the connected edges now (services mode's went out through Redis)."""
    bundle = row.result.get("bundle") or {}
    if settings.SERVICES_MODE or not bundle.get("published"):
        return
    from federation import bundles

    published = bundles.Bundle.objects.filter(version=bundle.get("version")).first()
    if published is not None:
        bundles.announce(published)
