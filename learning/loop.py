"""The autonomous learning loop (docs/design.md §6b; docs/training.md, "The autonomous loop").

Beat asks `tick` every few seconds; a cycle is due once `interval` has passed since the last,
and runs only when the node is idle (`idleness`): no request being answered, none for
`QIG_LEARNING_IDLE_S`, and no job queued or running — so it never competes with people chatting
or a job training. A due cycle that finds the node busy waits (the loop's state says why), and
runs at the first idle tick. An admin can switch the loop off, or ask for one cycle now (which
skips the wait for quiet, not the checks for requests and jobs in progress).

A cycle: **reflect** (the learning signals no cycle has used yet) → **opportunities** (typed and
scored: a kernel's corrections, its approved answers, a vocabulary gap, constraints, questions
asked again with no better answer yet) → **improve** (at most `QIG_LEARNING_MAX_ACTIONS`: a
low-priority adapter job per kernel on its corrections as prompt/completion and its approved
answers as reinforcement, started from the version the kernel serves and held to the promotion
gate like any adapter job; vocabulary expansion) → **sync** (the cycle's learning delta, for the
federation outbox when the node is federated). Each step is a learning event.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from constellation import activity
from dashboard.services import publish_on_commit
from learning.models import (
    CycleStatus,
    CycleTrigger,
    FineTuneJob,
    JobStatus,
    LearningCycle,
    LearningEvent,
    LearningEventKind,
    LearningSignal,
    LoopState,
)
from learning.opportunity import choose, counted
from learning.services import event_message
from qigcenter.celery import app as celery_app

if TYPE_CHECKING:
    from rest_framework.request import Request

log = logging.getLogger(__name__)

RUN_CYCLE = "learning.tasks.run_cycle"
MAX_SIGNALS = 500  # read by one cycle (the oldest first; the rest wait for the next)
BUSY = (JobStatus.QUEUED, JobStatus.RUNNING)


# ---- idleness ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Idle:
    idle: bool
    reason: str
    last_request_at: datetime | None
    in_flight: int
    running_jobs: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_request_at"] = self.last_request_at.isoformat() if self.last_request_at else None
        return out


def idleness(waiting: bool = True) -> Idle:
    """Whether a cycle may run now. `waiting` False (an admin's "run now"): a request or a job
    in progress still stops it, the quiet time does not."""
    now = activity.now()
    last = datetime.fromtimestamp(now.last_at, tz=UTC) if now.last_at else None
    jobs = FineTuneJob.objects.filter(status__in=BUSY).count()

    def busy(reason: str) -> Idle:
        return Idle(False, reason, last, now.in_flight, jobs)

    if now.in_flight:
        return busy(f"a request is in progress ({now.in_flight} in flight)")
    if jobs:
        return busy(f"{jobs} job{'s' if jobs > 1 else ''} queued or running")
    need = settings.LEARNING_IDLE_S
    if waiting:
        quiet = now.quiet_for()
        if quiet is not None and quiet < need:
            return busy(f"a request {quiet:.0f} s ago (needs {need:g} s without one)")
        ended = FineTuneJob.objects.aggregate(t=Max("finished_at"))["t"]
        since = (timezone.now() - ended).total_seconds() if ended is not None else None
        if since is not None and since < need:
            return busy(f"a job finished {since:.0f} s ago (needs {need:g} s without one)")
    return Idle(True, "idle: no request or job in progress", last, now.in_flight, jobs)


# ---- scheduling --------------------------------------------------------------------------------
def tick() -> LearningCycle | None:
    """Beat: run the due cycle if the node is idle (None: not due, switched off, or busy)."""
    state = LoopState.get()
    now = timezone.now()
    if not state.is_enabled:
        if state.next_cycle_at is not None or state.waiting:
            LoopState.objects.filter(pk=1).update(next_cycle_at=None, waiting="")
        return None
    if state.next_cycle_at is None:  # switched on (or the first tick): one interval from now
        LoopState.objects.filter(pk=1).update(next_cycle_at=now + timedelta(seconds=state.interval))
        publish_loop()
        return None
    if now < state.next_cycle_at:
        return None
    idle = idleness()
    if not idle.idle:
        waiting = f"postponed: {idle.reason}"
        if waiting != state.waiting:
            LoopState.objects.filter(pk=1).update(waiting=waiting)
            publish_loop()
        return None
    cycle = _new_cycle(CycleTrigger.SCHEDULE, None)
    if cycle is None:
        return None
    LoopState.objects.filter(pk=1).update(
        next_cycle_at=now + timedelta(seconds=state.interval), waiting=""
    )
    return run_cycle(cycle.pk)


def request_cycle(user: AbstractBaseUser | AnonymousUser | None) -> LearningCycle | None:
    """An admin's "run one cycle now": queued for a worker, or recorded as skipped with why (a
    request or a job in progress). None: a cycle is already queued or running."""
    who = user if isinstance(user, User) else None
    idle = idleness(waiting=False)
    if not idle.idle:
        if LearningCycle.objects.filter(status__in=ACTIVE).exists():
            return None
        cycle = LearningCycle.objects.create(
            trigger=CycleTrigger.MANUAL,
            status=CycleStatus.SKIPPED,
            requested_by=who,
            reason=f"not run: {idle.reason}",
            finished_at=timezone.now(),
        )
        publish_cycle(cycle)
        return cycle
    queued = _new_cycle(CycleTrigger.MANUAL, who)
    if queued is not None:
        pk = queued.pk
        transaction.on_commit(lambda: celery_app.send_task(RUN_CYCLE, (pk,)), robust=True)
    return queued


ACTIVE = (CycleStatus.QUEUED, CycleStatus.RUNNING)


def _new_cycle(trigger: str, who: User | None) -> LearningCycle | None:
    try:
        with transaction.atomic():
            cycle = LearningCycle.objects.create(trigger=trigger, requested_by=who)
    except IntegrityError:  # one is queued or running already
        return None
    publish_cycle(cycle)
    return cycle


def switch(enabled: bool, by: str, source: str = "admin", interval_s: float | None = None) -> None:
    """Switch the loop on or off (an admin, or a Modelfile's PARAMETERs); on: the next cycle is
    one interval away."""
    state = LoopState.get()
    state.enabled, state.source, state.set_by = enabled, source, by[:200]
    if interval_s is not None:
        state.interval_s = interval_s
    state.next_cycle_at = (
        timezone.now() + timedelta(seconds=state.interval) if state.is_enabled else None
    )
    state.waiting = ""
    state.save()
    publish_loop()


# ---- one cycle ---------------------------------------------------------------------------------
def run_cycle(pk: int) -> LearningCycle | None:
    """Run the queued cycle `pk` (None: it is not queued: another worker took it)."""
    if not LearningCycle.objects.filter(pk=pk, status=CycleStatus.QUEUED).update(
        status=CycleStatus.RUNNING, started_at=timezone.now()
    ):
        return None
    cycle = LearningCycle.objects.get(pk=pk)
    publish_cycle(cycle)
    try:
        _run(cycle)
    except Exception as exc:
        log.exception("learning cycle %s failed", pk)
        cycle.status, cycle.reason = CycleStatus.FAILED, f"failed: {exc}"[:500]
    cycle.finished_at = timezone.now()
    cycle.save()
    _event(cycle, f"cycle {cycle.pk} {cycle.get_status_display()}: {cycle.reason}")
    publish_cycle(cycle)
    return cycle


def _run(cycle: LearningCycle) -> None:
    from learning import improve  # the adapter jobs and vocabulary: loads the published model

    signals = list(
        LearningSignal.objects.unused()
        .select_related("interaction")
        .order_by("created_at", "id")[:MAX_SIGNALS]
    )
    counts = Counter(s.kind for s in signals)
    cycle.signals_read, cycle.signals_by_kind = len(signals), dict(counts)
    _event(cycle, f"cycle {cycle.pk} reflect: {counted(counts) or 'no new signals'}")
    found = improve.opportunities(signals, improve.vocabulary_gaps())
    chosen = choose(found, settings.LEARNING_MAX_ACTIONS)
    cycle.opportunities = [o.as_dict() for o in found]
    if not found:
        cycle.status = CycleStatus.SKIPPED
        cycle.reason = (
            "nothing to learn: no new learning signals since the last cycle"
            if not signals
            else f"nothing to learn from {counted(counts)}"
        )
        _mark_used(signals)
        return
    _event(cycle, f"cycle {cycle.pk} opportunities: " + "; ".join(o.summary for o in found))
    # The vocabulary first: the adapter jobs queued after it train with the grown one.
    chosen.sort(key=lambda o: o.kind != "vocabulary")
    cycle.actions = [improve.act(cycle, o) for o in chosen]
    # Used: what this cycle acted on or cannot act on; what the cap left waits for the next.
    waiting = {pk for o in found if not o.chosen and o.actionable for pk in o.signals}
    _mark_used([s for s in signals if s.pk not in waiting])
    cycle.sync = improve.sync_delta(cycle, signals)
    done = [a for a in cycle.actions if a["status"] not in ("failed", "refused")]
    cycle.status = CycleStatus.DONE if done else CycleStatus.SKIPPED
    cycle.reason = "; ".join(a["summary"] for a in cycle.actions)[:500] or "no action taken"
    _event(cycle, f"cycle {cycle.pk} sync: {cycle.sync.get('outbox', '')}")


def _mark_used(signals: list[LearningSignal]) -> None:
    pks = [s.pk for s in signals]
    if pks:
        LearningSignal.objects.filter(pk__in=pks, used_at__isnull=True).update(
            used_at=timezone.now()
        )


# ---- what the dashboard hears ------------------------------------------------------------------
def _event(cycle: LearningCycle, message: str) -> None:
    event = LearningEvent.objects.create(
        kind=LearningEventKind.AUTONOMOUS, message=message[:500], data={"cycle": cycle.pk}
    )
    publish_on_commit("learning", event_message(event))


def publish_cycle(cycle: LearningCycle) -> None:
    publish_on_commit("learning", {"kind": "learning.cycle", "cycle": cycle_data(cycle)})


def publish_loop() -> None:
    publish_on_commit("learning", {"kind": "learning.loop", "loop": loop_data(None)})


# ---- what the API and the dashboard see ------------------------------------------------------
def cycle_data(cycle: LearningCycle, jobs: dict[int, FineTuneJob] | None = None) -> dict[str, Any]:
    """A cycle as the API and the `learning` topic carry it; adapter actions with their job's
    outcome now (`jobs`: preloaded, else read)."""
    wanted = [a["job"] for a in cycle.actions if a.get("job")]
    if jobs is None:
        jobs = FineTuneJob.objects.in_bulk(wanted)
    actions = []
    for action in cycle.actions:
        row = {k: v for k, v in action.items() if k != "report"}
        row.setdefault("promoted", None)
        row.setdefault("heldout", None)
        if action.get("job"):
            row.update(job_outcome(jobs.get(action["job"]), action.get("kernel")))
        if "report" in action:
            row["vocabulary"] = action["report"]
        actions.append(row)
    return {
        "id": cycle.pk,
        "trigger": cycle.trigger,
        "status": cycle.status,
        "reason": cycle.reason,
        "created_at": cycle.created_at.isoformat() if cycle.created_at else None,
        "started_at": cycle.started_at.isoformat() if cycle.started_at else None,
        "finished_at": cycle.finished_at.isoformat() if cycle.finished_at else None,
        "signals_read": cycle.signals_read,
        "signals_by_kind": cycle.signals_by_kind,
        "opportunities": cycle.opportunities,
        "actions": actions,
        "sync": cycle.sync,
    }


def job_outcome(job: FineTuneJob | None, kernel: int | None) -> dict[str, Any]:
    """An adapter action's live outcome: the job's status, and once it ran, whether the kernel's
    new version was promoted, with its held-out figures."""
    if job is None:
        return {"status": "gone", "promoted": None, "heldout": None}
    rows = (job.evaluation or {}).get("kernels", [])
    row = next((r for r in rows if r.get("kernel") == kernel), None)
    if row is None:
        return {"status": job.status, "promoted": None, "heldout": None}
    keys = ("own_before", "own_after", "own_is_heldout", "served_change", "general_change")
    figures = {k: row["heldout"].get(k) for k in keys}
    figures.update({k: row["heldout"].get(k) for k in ("previous_before", "previous_after")})
    return {
        "status": job.status,
        "promoted": row.get("promoted"),
        "heldout": figures,
        "reason": row.get("reason", ""),
    }


def loop_data(request: Request | None) -> dict[str, Any]:
    state = LoopState.get()
    last = LearningCycle.objects.first()
    idle = idleness()
    waiting = state.waiting if state.is_enabled else ""
    data: dict[str, Any] = {
        **state.as_dict(),
        "idle_s": settings.LEARNING_IDLE_S,
        "max_actions": settings.LEARNING_MAX_ACTIONS,
        "idle": {**idle.as_dict(), "waiting": waiting},
        "next_cycle_at": state.next_cycle_at.isoformat()
        if state.is_enabled and state.next_cycle_at
        else None,
        "running": LearningCycle.objects.filter(status__in=ACTIVE).exists(),
        "last_cycle": cycle_data(last) if last is not None else None,
    }
    if request is not None:
        data["can_control"] = bool(request.user.is_staff)
    return data
