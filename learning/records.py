"""A learning signal as training data: the prompt as the model saw it and the completion it
should have given (a correction) or gave (an approved answer). Shared by the learning loop
(`learning.improve`) and federation's patterns (`federation.patterns`)."""

from __future__ import annotations

from constellation.prompts import asked_prompt
from learning.models import LearningSignal, SignalKind


def taught_text(s: LearningSignal) -> str:
    item = s.interaction
    assert item is not None
    return (s.content if s.kind == SignalKind.CORRECTION else item.response).strip()


def record_of(s: LearningSignal) -> dict[str, str]:
    """Prompt → completion, as the model saw the prompt (the rendered chat or generate prompt)
    and as it should have answered (a correction) or did (an approved answer)."""
    assert s.interaction is not None
    return {"prompt": prompt_of(s), "completion": " " + taught_text(s)}


def prompt_of(s: LearningSignal) -> str:
    item = s.interaction
    return "" if item is None else asked_prompt(item.model, item.prompt, item.messages)
