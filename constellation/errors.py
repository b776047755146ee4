"""The expected failures of serving a request; `status` is the HTTP status clients get (the views
turn them into Ollama's `{"error": ...}` or OpenAI's error shape)."""

from __future__ import annotations


class InferenceError(Exception):
    """An expected failure answering a request; `status` is the HTTP status clients get."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(InferenceError):
    status = 400


class ContextTooLong(BadRequest):
    """The prompt does not fit the context window: `tokens` ≥ `window`."""

    def __init__(self, tokens: int, window: int) -> None:
        super().__init__(
            f"the input length ({tokens} tokens) exceeds the context length ({window})"
        )
        self.tokens, self.window = tokens, window


class ModelNotFound(InferenceError):
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")


class Unavailable(InferenceError):
    status = 503


class Busy(Unavailable):
    def __init__(self) -> None:
        super().__init__("server busy, please try again.  maximum pending requests exceeded")
