"""The autonomous loop's schedule, idleness, switch, opportunities and API, in the real test
database (the model-side of a cycle, learning a correction, is `test_loop_live.py`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from constellation import activity
from constellation.interactions import Asked, record
from constellation.interactions import Client as Caller
from constellation.models import Interaction, ModelConfig
from learning import loop, services
from learning.models import (
    CycleStatus,
    FineTuneJob,
    JobKind,
    LearningCycle,
    LearningEvent,
    LearningEventKind,
    LearningSignal,
    LoopState,
    SignalKind,
)
from learning.opportunity import Opportunity

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quiet_node(settings, tmp_path: Path) -> None:
    """No coordizer, no cache left by another test, no quiet time to wait for."""
    from django.core.cache import cache

    settings.MODELS_DIR = tmp_path / "models"
    settings.MEDIA_ROOT = str(tmp_path / "uploads")
    settings.LEARNING_IDLE_S = 0.0
    settings.AUTONOMOUS_LEARNING = True
    cache.clear()


def answered(question: str, kernel: int | None = 57) -> Interaction:
    asked = Asked(
        "app-chat",
        Caller(None, "loop-test/1", "127.0.0.1"),
        prompt=f"user: {question}\nassistant:",
        messages=[{"role": "user", "content": question}],
    )
    return record(asked, "qig-constellation:latest", "an answer", {"kernel": kernel}, "stop")


def signal(kind: str, item: Interaction, content: str = "", value: float = 0.9) -> LearningSignal:
    return LearningSignal.objects.create(
        kind=kind,
        value=value,
        reason="test",
        interaction=item,
        kernel_index=item.kernel,
        content=content,
    )


def due() -> None:
    LoopState.objects.update_or_create(
        pk=1, defaults={"next_cycle_at": timezone.now() - timedelta(seconds=1)}
    )


# ---- the schedule and idleness ----------------------------------------------------------------
def test_the_first_tick_schedules_a_cycle_one_interval_away(settings) -> None:
    settings.LEARNING_INTERVAL_S = 120.0
    assert loop.tick() is None
    state = LoopState.get()
    assert state.next_cycle_at is not None
    left = (state.next_cycle_at - timezone.now()).total_seconds()
    assert 110 < left <= 120
    assert loop.tick() is None and not LearningCycle.objects.exists()  # not due yet


def test_a_request_in_progress_postpones_the_due_cycle_until_it_ends() -> None:
    due()
    activity.begin()
    assert loop.tick() is None
    state = LoopState.get()
    assert state.waiting == "postponed: a request is in progress (1 in flight)"
    assert not LearningCycle.objects.exists()

    activity.end()
    cycle = loop.tick()
    assert cycle is not None and cycle.status == CycleStatus.SKIPPED
    assert cycle.reason == "nothing to learn: no new learning signals since the last cycle"
    state = LoopState.get()
    assert state.waiting == ""
    assert state.next_cycle_at is not None and state.next_cycle_at > timezone.now()
    kinds = set(LearningEvent.objects.values_list("kind", flat=True))
    assert kinds == {LearningEventKind.AUTONOMOUS}  # reflect, and the cycle's end


def test_quiet_time_and_jobs_count_as_busy(settings) -> None:
    settings.LEARNING_IDLE_S = 60.0
    activity.begin()
    activity.end()
    idle = loop.idleness()
    assert not idle.idle and idle.reason.startswith("a request 0 s ago (needs 60 s")
    assert loop.idleness(waiting=False).idle  # "run now" does not wait for quiet

    services.queue_job(kind=JobKind.COORDIZER, created_by=None)
    for waiting in (True, False):
        idle = loop.idleness(waiting)
        assert not idle.idle and idle.reason == "1 job queued or running" and idle.running_jobs == 1


def test_switched_off_the_loop_never_runs(settings) -> None:
    loop.switch(False, by="admin")
    due()
    LoopState.objects.update(enabled=False)
    assert loop.tick() is None
    assert LoopState.get().next_cycle_at is None and not LearningCycle.objects.exists()
    loop.switch(True, by="admin")
    assert LoopState.get().next_cycle_at is not None


def test_run_now_while_a_job_runs_is_recorded_with_why(admin_user) -> None:
    services.queue_job(kind=JobKind.COORDIZER, created_by=None)
    cycle = loop.request_cycle(admin_user)
    assert cycle is not None and cycle.status == CycleStatus.SKIPPED
    assert cycle.reason == "not run: 1 job queued or running"
    assert cycle.requested_by == admin_user


# ---- opportunities ----------------------------------------------------------------------------
def test_a_cycle_acts_on_at_most_the_cap_and_leaves_the_rest_for_the_next(settings) -> None:
    settings.LEARNING_MAX_ACTIONS = 2
    for kernel, value in ((10, 0.9), (20, 0.8), (30, 0.7)):
        signal(SignalKind.CORRECTION, answered(f"q{kernel}", kernel), "better", value)
    asked = answered("what is a list?")
    signal(SignalKind.REJECTED, asked, value=0.5)
    signal(SignalKind.REPEATED_QUERY, answered("what is a list?"), value=0.4)
    due()
    cycle = loop.tick()
    assert cycle is not None
    chosen = {(o["kind"], o["kernel"]): o["chosen"] for o in cycle.opportunities}
    assert chosen == {
        ("correction", 10): True,
        ("correction", 20): True,
        ("correction", 30): False,  # beyond the cap
        ("constraint", None): True,  # recorded for sync
        ("explore", None): False,
    }
    # No coordizer on this node: the improvement is refused, and says why.
    assert [a["status"] for a in cycle.actions if a["kind"] == "correction"] == [
        "refused",
        "refused",
    ]
    assert all("there is no coordizer yet" in a["summary"] for a in cycle.actions[:2])
    waiting = LearningSignal.objects.filter(used_at__isnull=True)
    assert [s.kernel_index for s in waiting] == [30]  # the next cycle's
    assert cycle.sync["delta"]["constraints"][0]["kernel"] == 57
    assert cycle.sync["federated"] is False


def test_a_trunk_answer_is_taught_to_the_nearest_kernel_or_not_at_all() -> None:
    item = answered("q", kernel=None)
    signal(SignalKind.CORRECTION, item, "better")
    found = loop_opportunities()
    assert found == []  # no coordizer: no basin, so no kernel to teach


def loop_opportunities() -> list[Opportunity]:
    from learning import improve

    return improve.opportunities(list(LearningSignal.objects.all()), improve.vocabulary_gaps())


# ---- the switch from a Modelfile, the API --------------------------------------------------------
def test_a_modelfiles_parameters_set_the_loop() -> None:
    ModelConfig.objects.create(
        name="tutor:latest",
        base="qig-constellation",
        parameters={"autonomous_learning": False, "learning_interval": 900},
        modelfile="FROM qig-constellation\nPARAMETER autonomous_learning false\n",
    )
    state = LoopState.get()
    assert (state.is_enabled, state.interval, state.source, state.set_by) == (
        False,
        900.0,
        "modelfile",
        "tutor:latest",
    )


def test_the_api_shows_the_loop_to_everyone_and_lets_only_admins_change_it(
    admin_api, dev_api
) -> None:
    seen = dev_api.get("/api/v1/learning/loop/").json()
    assert seen["enabled"] is True and seen["can_control"] is False
    assert seen["idle"]["idle"] is True and seen["last_cycle"] is None
    assert (
        dev_api.patch("/api/v1/learning/loop/", {"enabled": False}, format="json").status_code
        == 403
    )
    assert dev_api.post("/api/v1/learning/loop/run/").status_code == 403

    off = admin_api.patch("/api/v1/learning/loop/", {"enabled": False}, format="json")
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert off.json()["enabled_source"] == "admin" and off.json()["next_cycle_at"] is None
    bad = admin_api.patch("/api/v1/learning/loop/", {"enabled": "maybe"}, format="json")
    assert bad.status_code == 400

    LearningCycle.objects.create(trigger="manual")  # one queued already
    busy = admin_api.post("/api/v1/learning/loop/run/")
    assert busy.status_code == 409 and "already" in busy.json()["detail"]
    rows = dev_api.get("/api/v1/learning/cycles/").json()
    assert rows["count"] == 1 and rows["results"][0]["status"] == "queued"


def test_an_adapter_action_shows_its_jobs_outcome(admin_api) -> None:
    job = FineTuneJob.objects.create(kind=JobKind.ADAPTER, target_kernels=[7])
    cycle = LearningCycle.objects.create(
        trigger="manual",
        status=CycleStatus.DONE,
        actions=[{"kind": "adapter_job", "kernel": 7, "job": job.pk, "status": "queued",
                  "summary": "adapter job"}],
    )  # fmt: skip
    row = admin_api.get("/api/v1/learning/cycles/").json()["results"][0]
    assert row["actions"][0]["promoted"] is None and row["actions"][0]["status"] == "queued"
    heldout = {"own_before": 3.0, "own_after": 2.0, "own_is_heldout": False,
               "served_change": 0.001, "general_change": 0.01}  # fmt: skip
    job.status = "completed"
    job.evaluation = {"kernels": [{"kernel": 7, "promoted": True, "reason": "ok",
                                   "heldout": heldout}]}  # fmt: skip
    job.save()
    row = admin_api.get(f"/api/v1/learning/cycles/{cycle.pk}/").json()
    action = row["actions"][0]
    assert action["status"] == "completed" and action["promoted"] is True
    assert action["heldout"]["own_after"] == 2.0 and action["heldout"]["previous_before"] is None


def test_a_correction_to_an_api_chat_is_learned_with_the_prompt_the_model_saw() -> None:
    """The Ollama and OpenAI chat endpoints keep only the messages: the record's prompt is the
    chat prompt rendered again, as the server rendered it."""
    messages = [{"role": "user", "content": "What is a deque?"}]
    asked = Asked("chat", Caller(None, "ollama-python/0.4", "127.0.0.1"), messages=messages)
    item = record(asked, "qig-constellation:latest", "a queue", {"kernel": 57}, "stop")
    assert item.prompt == ""
    signal(SignalKind.CORRECTION, item, "A double-ended queue.")
    [found] = loop_opportunities()
    assert (found.kind, found.kernel) == ("correction", 57)
    assert found.material["records"] == [
        {"prompt": "user: What is a deque?\nassistant:", "completion": " A double-ended queue."}
    ]
