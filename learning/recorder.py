"""The engine callback that records a run on its job: metric history, progress, ETA, learning
events for guard actions, and the telemetry on `jobs` / `consciousness` / `learning`.

Writes are batched once a second (and at every checkpoint, so the history never lacks a step the
checkpoint covers) and are conditional on the run's lease: a run that lost its job writes nothing
more and stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from constellation.engine import Action, Callback, StepInfo, step_metrics
from dashboard.services import publish, publish_on_commit
from learning.models import FineTuneJob, JobMetric, LearningEvent, LearningEventKind
from learning.services import event_message

if TYPE_CHECKING:
    from constellation.engine import Trainer

log = logging.getLogger(__name__)

FLUSH_S = 1.0  # metric history and progress reach the database at least this often
ANCHOR_ACTIONS = {"anchor_step"}
QUIET_ACTIONS = {"checkpoint"}  # recorded on the row (checkpoint_path), not as events


@dataclass(frozen=True)
class RunInfo:
    """What the recorder needs to know about the run it records."""

    job_id: int
    lease: str
    kind: str
    device: str
    total_steps: int
    should_stop: Callable[[], str | None]


def publish_quietly(topic: str, payload: dict[str, Any]) -> None:
    """Telemetry is best effort: a channel layer hiccup must not kill a training run."""
    try:
        publish(topic, payload)
    except Exception:
        log.warning("could not publish on %s", topic, exc_info=True)


class JobRecorder(Callback):
    """Records one trainer's steps as steps `offset + 1 …` of the job (one kernel of an adapter
    job is one trainer; its steps follow the previous kernels')."""

    def __init__(self, run: RunInfo, offset: int = 0, kernel: int | None = None) -> None:
        self.run, self.offset, self.kernel = run, offset, kernel
        self.buffer: list[JobMetric] = []
        self.awaiting_after: list[int] = []  # guard events waiting for the next Φ reading
        self.last: StepInfo | None = None
        self.lost = False
        self.on_checkpoint: Callable[[Trainer], None] | None = None
        self._flushed = self._sent_progress = self._sent_reading = 0.0
        self._rate_start: tuple[float, int] | None = None

    def job_step(self, step: int) -> int:
        return self.offset + step

    # ---- the engine's callback interface ---------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self._rate_start = (time.monotonic(), trainer.step)

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        r = info.reading
        self.buffer.append(
            JobMetric(
                job_id=self.run.job_id,
                step=self.job_step(info.step),
                kernel=self.kernel,
                loss=info.loss,
                lr=info.lr,
                grad_norm=info.grad_norm,
                tokens_per_s=info.tokens_per_s,
                phi=r.phi if r else None,
                kappa=r.kappa if r else None,
                regime=r.regime if r else "",
                phase=r.phase if r else "",
            )
        )
        self.last = info
        now = time.monotonic()
        if r is not None and self.awaiting_after:
            self._close_guard_events(info)
        if now - self._sent_progress >= settings.JOB_TELEMETRY_INTERVAL_S:
            self._sent_progress = now
            publish_quietly("jobs", self.progress_message(info))
        if r is not None and now - self._sent_reading >= settings.JOB_TELEMETRY_INTERVAL_S:
            self._sent_reading = now
            publish_quietly("consciousness", self.reading_message(info))
        if now - self._flushed >= FLUSH_S:
            self.flush(trainer)
        reason = self.run.should_stop()
        if reason:
            trainer.request_stop(reason)
        return []

    def on_action(self, trainer: Trainer, action: Action) -> None:
        if action.kind == "checkpoint":
            self.flush(trainer, checkpoint=str(action.detail["path"]))
            if self.on_checkpoint is not None and not self.lost:
                self.on_checkpoint(trainer)
            return
        if action.kind in QUIET_ACTIONS:
            return
        self.flush(trainer)  # the history up to this step first, then the event
        if not self.lost:
            self._guard_event(action)

    # ---- writing ---------------------------------------------------------------------------
    def flush(self, trainer: Trainer, checkpoint: str | None = None) -> None:
        """Write buffered steps and the row's progress, if this run still holds the job."""
        self._flushed = time.monotonic()
        if self.lost:
            self.buffer.clear()
            return
        step = self.job_step(trainer.step)
        fields: dict[str, Any] = {
            "step": step,
            "progress": min(1.0, step / max(self.run.total_steps, 1)),
            "eta_s": self._eta(trainer.step),
        }
        if self.last is not None:
            fields["metrics"] = self.latest_metrics(self.last)
        if checkpoint is not None:
            fields["checkpoint_path"] = checkpoint
        with transaction.atomic():
            mine = FineTuneJob.objects.filter(pk=self.run.job_id, lease=self.run.lease)
            if not mine.update(**fields):
                self.lost = True
            else:
                JobMetric.objects.bulk_create(self.buffer, ignore_conflicts=True)
        self.buffer.clear()
        if self.lost:
            log.warning("job %s: lease lost; this run stops", self.run.job_id)
            trainer.request_stop("another runner took the job over")

    def _eta(self, step: int) -> float | None:
        if self._rate_start is None:
            return None
        started, first = self._rate_start
        done, elapsed = step - first, time.monotonic() - started
        if done <= 0 or elapsed <= 0:
            return None
        remaining = self.run.total_steps - self.job_step(step)
        return max(0.0, remaining * elapsed / done)

    def _guard_event(self, action: Action) -> None:
        last = self.last
        reading = last.last_reading if last else None
        step = self.job_step(action.step)
        data = {
            "action": action.kind,
            "step": step,
            "kernel_step": action.step,
            "reason": action.reason,
            "detail": action.detail,
            "loss_before": last.loss if last else None,
            "phi_before": reading.phi if reading else None,
            "loss_after": None,
            "phi_after": None,
        }
        guard = action.kind not in ANCHOR_ACTIONS
        kind = LearningEventKind.GUARD if guard else LearningEventKind.ANCHOR
        with transaction.atomic():
            event = LearningEvent.objects.create(
                kind=kind,
                job_id=self.run.job_id,
                kernel_index=self.kernel,
                message=f"job {self.run.job_id} step {step}: {action.kind}: {action.reason}"[:500],
                data=data,
            )
            publish_on_commit("learning", event_message(event))
        if kind == LearningEventKind.GUARD:
            self.awaiting_after.append(event.pk)

    def _close_guard_events(self, info: StepInfo) -> None:
        """Fill in the loss and Φ measured after a guard acted (the next Φ reading)."""
        assert info.reading is not None
        for event in LearningEvent.objects.filter(pk__in=self.awaiting_after):
            after = {"loss_after": info.loss, "phi_after": info.reading.phi}
            event.data.update(after, after_step=self.job_step(info.step))
            event.save(update_fields=["data"])
        self.awaiting_after.clear()

    # ---- payloads (docs/training.md) -------------------------------------------------------
    def latest_metrics(self, info: StepInfo) -> dict[str, Any]:
        return {**step_metrics(info), "step": self.job_step(info.step), "kernel": self.kernel}

    def progress_message(self, info: StepInfo) -> dict[str, Any]:
        step = self.job_step(info.step)
        return {
            "kind": "job.progress",
            "job": self.run.job_id,
            "job_kind": self.run.kind,
            "device": self.run.device,
            "total_steps": self.run.total_steps,
            "progress": min(1.0, step / max(self.run.total_steps, 1)),
            "eta_s": self._eta(info.step),
            **self.latest_metrics(info),
        }

    def reading_message(self, info: StepInfo) -> dict[str, Any]:
        assert info.reading is not None
        r = info.reading
        return {
            "kind": "training.reading",
            "job": self.run.job_id,
            "kernel": self.kernel,
            "step": self.job_step(info.step),
            "phi": r.phi,
            "kappa": r.kappa,
            "regime": r.regime,
            "phase": r.phase,
            "n_tokens": r.n_tokens,
            "loss": info.loss,
            "time": timezone.now().isoformat(),
        }
