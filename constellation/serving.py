"""One answer, whatever the endpoint. Every answering view (Ollama's generate and chat, OpenAI's
completions and chat completions, the app's chat) resolves its model (`catalog`), builds its
prompt and sampling options (`prompts`) and calls `answer`; the `Answer` it gets streams the text
and records the interaction itself (`interactions`). Views only translate their protocol, as
vLLM's API server leaves the catalogue to `OpenAIServingModels` and answering to its serving
objects. No HTTP here; errors are `constellation.errors` types."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from asgiref.sync import sync_to_async

from constellation import activity
from constellation.catalog import ModelSpec
from constellation.errors import ContextTooLong
from constellation.inference import service
from constellation.interactions import Asked, record, record_after
from constellation.models import Conversation, Interaction
from constellation.prompts import Sampling, chat_prompt
from constellation.streaming import Generation, Piece


async def answer(
    spec: ModelSpec,
    prompt: str,
    sampling: Sampling,
    keep_alive: float | None,
    asked: Asked,
    context: list[int] | None = None,
    truncate: bool = False,
) -> Answer:
    """Admit one request to the scheduler. Its failures (no model, `ContextTooLong`, `Busy`) are
    raised here, before any output; `asked` is what its interaction will keep. With `truncate`,
    a prompt too long for the context loses its oldest tokens instead (Ollama's default)."""
    activity.begin()  # the learning loop waits while anyone is being answered
    try:
        gen = await service().start(
            prompt,
            sampling.options,
            keep_alive,
            spec.kernel,
            spec.preset,
            sampling.num_ctx,
            context,
            truncate,
            sampling.schema,
            spec.engine_quantization,
        )
    except BaseException:
        activity.end()
        raise
    return Answer(spec, gen, asked)


async def answer_chat(
    spec: ModelSpec,
    messages: list[dict[str, Any]],
    sampling: Sampling,
    keep_alive: float | None,
    asked: Callable[[list[dict[str, Any]]], Asked],
    truncate: bool = True,
) -> Answer:
    """`answer` a chat. When its history does not fit the context, as Ollama does: keep the
    system messages and the latest message, drop the oldest others until it fits, and if the
    latest alone is too long keep its end. Without `truncate`, `ContextTooLong`. `asked(kept)`
    is what the interaction keeps: the messages the model was given."""
    kept = list(messages)
    while True:
        prompt = chat_prompt(spec, kept)
        try:
            return await answer(spec, prompt, sampling, keep_alive, asked(kept))
        except ContextTooLong:
            oldest = next((i for i, m in enumerate(kept[:-1]) if m.get("role") != "system"), None)
            if not truncate:
                raise
            if oldest is None:  # the system messages and the latest: cut tokens
                return await answer(spec, prompt, sampling, keep_alive, asked(kept), None, True)
            del kept[oldest]


class Answer:
    """An admitted request: iterate `pieces()` (the APIs) or `turn()` (the app's chat) once."""

    def __init__(self, spec: ModelSpec, generation: Generation, asked: Asked) -> None:
        self.spec, self.generation, self.asked = spec, generation, asked
        self.interaction: Interaction | None = None  # the stored turn, by `turn()`s done piece

    def context(self) -> list[int]:
        """Prompt and reply token ids (Ollama's `context`, to continue a conversation)."""
        return self.generation.context()

    async def pieces(self) -> AsyncGenerator[Piece]:
        """The text as it comes, then at once the done piece (timings, no Φ/κ); the interaction is
        stored after the response (`record_after`). An answer left part-way is not stored."""
        text: list[str] = []
        try:
            async with aclosing(self.generation.pieces(reading=False)) as pieces:
                async for piece in pieces:
                    if piece.done:
                        answered = "".join(text)
                        record_after(self.generation, self.asked, self.spec.name, answered, piece)
                    else:
                        text.append(piece.text)
                    yield piece
        finally:
            activity.end()

    async def collect(self) -> tuple[str, Piece]:
        """The whole text of a non-streamed answer and its done piece (stored as `pieces`),
        which carries the log-probabilities of all its tokens when they were asked for."""
        parts: list[str] = []
        logprobs: list[dict[str, Any]] = []
        final: Piece | None = None
        async for piece in self.pieces():
            parts.append(piece.text)
            logprobs += piece.logprobs or []
            final = piece
        assert final is not None and final.done, "an answer ends with a done piece"
        if final.logprobs is not None:  # asked for: every token's, on the done piece
            final.logprobs = logprobs
        return "".join(parts), final

    async def turn(self, conversation: Conversation) -> AsyncGenerator[Piece]:
        """The answer as a turn of `conversation`: Φ/κ are measured and the turn is stored before
        the done piece comes (`self.interaction` is the row then). A turn cancelled (the client
        went away: the Stop button) or failed is stored with what it had, then the error goes on."""
        gen = self.generation
        text: list[str] = []
        first_token_at: float | None = None
        stored = False

        async def keep(stats: dict[str, Any], reason: str) -> Interaction:
            nonlocal stored
            stored = True
            answered = "".join(text)
            saving = sync_to_async(record)(
                self.asked, self.spec.name, answered, stats, reason, conversation
            )
            # Shielded: a second cancellation (the server shutting down) must not lose the turn.
            return await asyncio.shield(saving)

        async def keep_partial(reason: str) -> None:
            """The measures of an answer that did not finish, taken now, and the turn."""
            stats = await asyncio.to_thread(
                lambda: gen.measures(first_token_at, len(gen.context()) - gen.prompt_tokens)
            )
            await keep(stats, reason)

        try:
            async with aclosing(gen.pieces()) as pieces:
                async for piece in pieces:
                    if piece.done:
                        self.interaction = await keep(piece.stats, piece.done_reason)
                    else:
                        if first_token_at is None:
                            first_token_at = time.perf_counter()
                        text.append(piece.text)
                    yield piece
        except (asyncio.CancelledError, GeneratorExit):
            if not stored:
                await keep_partial("cancelled")
            raise
        except Exception:
            if not stored:
                await keep_partial("error")
            raise
        finally:
            activity.end()
