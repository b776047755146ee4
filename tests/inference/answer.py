"""`Answer`: the nested schema the third-party clients' structured-output tests ask for (an enum,
an array, a nested object, every field required), through LangChain and LlamaIndex alike."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

# Room for the whole object under any whitespace the grammar allows: its strings and arrays are
# bounded, so the grammar bounds the object and it ends before the budget does.
STRUCTURED_NUM_PREDICT = 256

Word = Annotated[str, StringConstraints(min_length=1, max_length=12)]


class Language(StrEnum):
    PYTHON = "python"
    GO = "go"
    RUST = "rust"


class Snippet(BaseModel):
    path: Word
    lines: int = Field(ge=1, le=99)


class Answer(BaseModel):
    language: Language
    keywords: list[Word] = Field(min_length=1, max_length=3)
    snippet: Snippet
    runnable: bool


def assert_is_an_answer(answer: object) -> None:
    """What pydantic already checked, asked again: the client really returned the class."""
    assert isinstance(answer, Answer), answer
    assert isinstance(answer.language, Language) and isinstance(answer.snippet, Snippet)
    assert 1 <= len(answer.keywords) <= 3 and all(1 <= len(k) <= 12 for k in answer.keywords)
    assert 1 <= answer.snippet.lines <= 99
