"""What a request asks of a model, as the engine takes it: the prompt text (a generate's prompt
through the model's template, or a chat's messages) and the sampling options (the request's over
the model's over Ollama's defaults)."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple

from constellation import catalog, tools
from constellation.catalog import ModelSpec
from constellation.engine import SamplingOptions
from constellation.engine.grammar import ANY_OBJECT
from constellation.errors import BadRequest, ModelNotFound
from constellation.tools import ToolPlan

# Ollama's documented defaults (the engine's own num_predict default is 128: a reply stays short
# unless asked; -1 is honoured up to the context).
DEFAULTS: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "repeat_penalty": 1.0}


class Sampling(NamedTuple):
    options: SamplingOptions
    num_ctx: int | None  # the request's context window (None: the model's)
    # the JSON schema the reply must match (`format`), or a lark grammar (a text: `tools`)
    schema: dict[str, Any] | str | None = None


def with_tools(
    sampling: Sampling, messages: list[dict[str, Any]], plan: ToolPlan | None
) -> tuple[Sampling, list[dict[str, Any]]]:
    """A chat's messages as the model reads them (earlier calls and tool results), and, when it
    is offered tools, their description first and the reply's grammar (`tools.ToolPlan`)."""
    messages = tools.history(messages)
    if plan is None:
        return sampling, messages
    if sampling.schema is not None:
        raise BadRequest("format and tools together: ask for one of them")
    return sampling._replace(schema=plan.grammar), [plan.offer(), *messages]


def with_logprobs(sampling: Sampling, logprobs: Any, top_logprobs: Any) -> Sampling:
    """`logprobs: true` (the log-probability of each token produced) and `top_logprobs` (that
    many alternatives too, 0–20), as Ollama's and OpenAI's chat take them."""
    if logprobs is None and top_logprobs is None:
        return sampling
    if not isinstance(logprobs, bool | type(None)):
        raise BadRequest("invalid value for field 'logprobs': expected true or false")
    top = 0 if top_logprobs is None else top_logprobs
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
        raise BadRequest("invalid value for field 'top_logprobs': an integer from 0 to 20")
    if top and not logprobs:
        raise BadRequest("top_logprobs needs logprobs: true")
    if not logprobs:
        return sampling
    return sampling._replace(options=dataclasses.replace(sampling.options, logprobs=top))


def ollama_format(value: Any) -> dict[str, Any] | None:
    """Ollama's `format`: "json" (any JSON object, as Ollama's JSON grammar), a JSON schema, or
    nothing ("" / null)."""
    if value is None or value == "":
        return None
    if value == "json":
        return dict(ANY_OBJECT)
    if isinstance(value, dict):
        return value
    raise BadRequest(f'invalid format: expected "json" or a JSON schema object, got {value!r:.80}')


def openai_format(value: Any) -> dict[str, Any] | None:
    """OpenAI's `response_format`: {"type": "text" | "json_object" | "json_schema", …}."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(ANY_OBJECT)
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("response_format: json_schema.schema: expected a JSON schema object")
        return schema
    raise BadRequest("response_format: type must be text, json_object or json_schema")


THINK_LEVELS = (True, "low", "medium", "high")


def refuse_unsupported(spec: ModelSpec, body: dict[str, Any], chat: bool = True) -> None:
    """What these models cannot do is refused as Ollama refuses it for a model without the
    capability (400), never dropped silently: thinking (`think: false` is accepted); and tools
    anywhere but a chat (`constellation/tools.py` answers them there)."""
    if not chat and body.get("tools"):
        raise BadRequest("tools: only a chat (/api/chat, /v1/chat/completions) takes tools")
    think = body.get("think")
    if think is None or think is False:
        return
    if think in THINK_LEVELS:
        raise BadRequest(f"{spec.name} does not support thinking")
    raise BadRequest("invalid value for field 'think': true, false, low, medium or high")


def sampling_options(spec: ModelSpec, options: Any, format: Any = None) -> Sampling:
    """The request's `options` over the model's parameters over Ollama's defaults; `format`:
    Ollama's (`ollama_format`)."""
    schema = ollama_format(format)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise BadRequest("options: expected an object")
    merged = {**DEFAULTS, **spec.parameters, **options}
    try:
        opts = SamplingOptions.from_ollama(merged)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"invalid options: {exc}") from None
    num_ctx = merged.get("num_ctx")
    if num_ctx is not None and (isinstance(num_ctx, bool) or not isinstance(num_ctx, int | float)):
        raise BadRequest("invalid options: num_ctx: expected a number")
    if num_ctx is not None and not (math.isfinite(num_ctx) and 0 <= num_ctx < 2**31):
        raise BadRequest(f"invalid options: num_ctx: {num_ctx!r} is out of range (0 to 2^31-1)")
    return Sampling(opts, int(num_ctx) if num_ctx else None, schema)


def render_template(template: str, system: str, prompt: str) -> str:
    """The subset of Ollama's Go templates a Modelfile here may use."""
    text = template.replace("{{ .System }}", system).replace("{{.System}}", system)
    text = text.replace("{{ .Prompt }}", prompt).replace("{{.Prompt}}", prompt)
    text = text.replace("{{ .Response }}", "").replace("{{.Response}}", "")
    return re.sub(r"{{-?\s*(if|end|else)[^}]*}}", "", text)


def generate_prompt(spec: ModelSpec, body: dict[str, Any]) -> str:
    prompt = body.get("prompt") or ""
    if body.get("raw"):
        return prompt
    system = body.get("system") or spec.system
    template = body.get("template") or spec.template
    if template:
        return render_template(template, system, prompt)
    return f"{system}\n\n{prompt}" if system else prompt


def chat_prompt(spec: ModelSpec, messages: list[dict[str, Any]]) -> str:
    turns = list(spec.messages) + messages
    if spec.system and not any(m.get("role") == "system" for m in turns):
        turns.insert(0, {"role": "system", "content": spec.system})
    lines = [f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in turns]
    return "\n".join(lines) + "\nassistant:"


def asked_prompt(model: str, prompt: str, messages: list[dict[str, Any]] | None) -> str:
    """The prompt a stored interaction's model was given. A chat keeps only its messages (the
    Ollama and OpenAI chat endpoints): rendered again as `chat_prompt` rendered it, with the
    model's settings (the built-in constellation's when the model was deleted since)."""
    if prompt or not messages:
        return prompt
    try:
        spec = catalog.resolve(model)
    except ModelNotFound:
        spec = ModelSpec(model)
    return chat_prompt(spec, messages)


def check_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        return []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: expected a list of objects")
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant", "tool"):
            raise BadRequest(f"messages: invalid role {m.get('role')!r}")
        if not isinstance(m.get("content", ""), str | type(None)):
            raise BadRequest("messages: content must be a string")
    return messages
