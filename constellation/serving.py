"""What the Ollama- and OpenAI-shaped views call: model names, options, prompts, model configs
and the interaction record. No HTTP here; errors are `inference.InferenceError`s."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from constellation import inference, modelfile
from constellation.engine import SamplingOptions, e8
from constellation.inference import BadRequest, ModelNotFound
from constellation.models import Interaction, ModelConfig
from constellation.streaming import Generation, Piece

log = logging.getLogger(__name__)

FAMILY = "qig"
CONSTELLATION = "qig-constellation"
PRESET_TAGS = ("latest", *e8.PRESETS)
KERNEL_MODEL = re.compile(r"^qig-kernel-(\d+)-([a-z]+):latest$")
MAX_BASE_DEPTH = 8
# Ollama's documented defaults (the engine's own num_predict default is 128: a reply stays short
# unless asked; -1 is honoured up to the context).
DEFAULTS: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "repeat_penalty": 1.0}


def full_name(name: str) -> str:
    name = name.strip()
    return name if ":" in name.rpartition("/")[2] else f"{name}:latest"


def kernel_model_name(kernel: int) -> str:
    return f"qig-kernel-{kernel}-{e8.role_of(kernel).value.lower()}:latest"


@dataclass
class ModelSpec:
    name: str
    kernel: int | None = None
    preset: str = "latest"
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str = ""
    template: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    config: ModelConfig | None = None


def builtin(name: str) -> ModelSpec | None:
    base, _, tag = name.partition(":")
    if base == CONSTELLATION and tag in PRESET_TAGS:
        return ModelSpec(name, preset=tag)
    match = KERNEL_MODEL.match(name.lower())
    if match:
        index = int(match.group(1))
        if index < e8.N_ROOTS and e8.role_of(index).value.lower() == match.group(2):
            return ModelSpec(name, kernel=index)
    return None


def resolve(raw_name: Any) -> ModelSpec:
    """A model name → what to run. Unknown names raise `ModelNotFound` (404)."""
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise ModelNotFound("" if not isinstance(raw_name, str) else raw_name)
    name = full_name(raw_name)
    spec = builtin(name)
    if spec is not None:
        return spec
    config = ModelConfig.objects.filter(name=name).first()
    if config is None:
        raise ModelNotFound(raw_name)
    chain = [config]
    base = full_name(config.base)
    while (spec := builtin(base)) is None:
        parent = ModelConfig.objects.filter(name=base).first()
        if parent is None or len(chain) > MAX_BASE_DEPTH:
            raise ModelNotFound(config.base)
        chain.append(parent)
        base = full_name(parent.base)
    for cfg in reversed(chain):  # the named config's own settings win over its bases'
        spec.parameters.update(cfg.parameters)
        spec.system = cfg.system or spec.system
        spec.template = cfg.template or spec.template
        spec.messages = cfg.messages or spec.messages
        if cfg.adapter_kernel is not None:
            spec.kernel = cfg.adapter_kernel
    size = spec.parameters.get("constellation_size")
    if size:  # routing uses it unless an ADAPTER pins a kernel
        spec.preset = size
    spec.name, spec.config = name, config
    return spec


async def aresolve(raw_name: Any) -> ModelSpec:
    """`resolve` for async views: a built-in name is answered on the event loop (no thread hop,
    no query); a model config is looked up in the database off the loop."""
    if isinstance(raw_name, str) and raw_name.strip():
        spec = builtin(full_name(raw_name))
        if spec is not None:
            return spec
    return await sync_to_async(resolve)(raw_name)


def sampling_options(spec: ModelSpec, options: Any) -> tuple[SamplingOptions, int | None]:
    """The request's `options` over the model's parameters over Ollama's defaults."""
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
    return opts, int(num_ctx) if num_ctx else None


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


# ---- listing -----------------------------------------------------------------------------------
def details(files: inference.ModelFiles | None, parent: str = "") -> dict[str, Any]:
    params = files.parameters if files else 0
    size = f"{params / 1e6:.1f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"
    return {
        "parent_model": parent,
        "format": "safetensors",
        "family": FAMILY,
        "families": [FAMILY],
        "parameter_size": size,
        "quantization_level": files.dtype if files else "F32",
    }


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat()


def model_names() -> list[tuple[str, str]]:
    """(name, parent) of every model this node serves."""
    names = [(f"{CONSTELLATION}:{tag}", "") for tag in PRESET_TAGS]
    kernels = set(inference.kernel_adapter_dirs()) | set(e8.preset_kernels("minimal"))
    names += [(kernel_model_name(k), "") for k in sorted(kernels)]
    names += [(c.name, full_name(c.base)) for c in ModelConfig.objects.all()]
    return names


def tags() -> list[dict[str, Any]]:
    files = inference.model_files()
    if files is None:
        return []
    entries = []
    for name, parent in model_names():
        digest = hashlib.sha256(f"{name}|{files.digest}".encode()).hexdigest()
        entries.append(
            {
                "name": name,
                "model": name,
                "modified_at": iso(files.modified),
                "size": files.size,
                "digest": digest,
                "details": details(files, parent),
            }
        )
    return entries


def show(spec: ModelSpec) -> dict[str, Any]:
    files = inference.model_files()
    if files is None:
        raise inference.Unavailable(f"no trained model yet: {inference.bootstrap_progress()}")
    mf = modelfile.Modelfile(
        base=spec.config.base if spec.config else spec.name,
        parameters=dict(spec.parameters),
        system=spec.system,
        template=spec.template,
        adapter_kernel=spec.kernel if spec.config else None,
        messages=list(spec.messages),
    )
    parameters = "\n".join(
        f"{k} {v}"
        for k, vs in spec.parameters.items()
        for v in (vs if isinstance(vs, list) else [vs])
    )
    return {
        "modelfile": modelfile.render(mf),
        "parameters": parameters,
        "template": spec.template or "{{ .System }}\n\n{{ .Prompt }}",
        "system": spec.system,
        "license": spec.config.license if spec.config else "",
        "details": details(files, full_name(spec.config.base) if spec.config else ""),
        "model_info": {
            "general.architecture": FAMILY,
            "general.parameter_count": files.parameters,
            "qig.context_length": files.context_length,
            "qig.kernel": spec.kernel,
            "qig.constellation_size": spec.preset,
            "qig.adapters": files.adapters,
        },
        "capabilities": ["completion", "embedding"],
        "modified_at": iso(spec.config.modified_at.timestamp() if spec.config else files.modified),
    }


# ---- configs -----------------------------------------------------------------------------------
def create(name: Any, text: Any, **fields: Any) -> ModelConfig:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("model is required")
    if not isinstance(text, str) or not text.strip():
        if not fields.get("from"):
            raise BadRequest("a Modelfile (modelfile) or from is required")
        text = f"FROM {fields['from']}\n"
        for key, value in (fields.get("parameters") or {}).items():
            for v in value if isinstance(value, list) else [value]:
                text += f"PARAMETER {key} {v}\n"
        if fields.get("system"):
            text += f'SYSTEM """{fields["system"]}"""\n'
        if fields.get("template"):
            text += f'TEMPLATE """{fields["template"]}"""\n'
    try:
        mf = modelfile.parse(text)
    except modelfile.ModelfileError as exc:
        raise BadRequest(str(exc)) from None
    name = full_name(name)
    if builtin(name) is not None:
        raise BadRequest(f"'{name}' is a built-in model")
    resolve(mf.base)  # the base must exist (404 otherwise)
    config, _ = ModelConfig.objects.update_or_create(
        name=name,
        defaults={
            "base": mf.base,
            "parameters": mf.parameters,
            "system": mf.system,
            "template": mf.template,
            "adapter_kernel": mf.adapter_kernel,
            "license": mf.license,
            "messages": mf.messages,
            "modelfile": modelfile.render(mf),
        },
    )
    return config


def copy(source: Any, destination: Any) -> None:
    if not isinstance(source, str) or not isinstance(destination, str) or not destination:
        raise BadRequest("source and destination are required")
    dest = full_name(destination)
    if builtin(dest) is not None:
        raise BadRequest(f"'{dest}' is a built-in model")
    spec = resolve(source)
    if spec.config is None:
        ModelConfig.objects.update_or_create(
            name=dest, defaults={"base": spec.name, "modelfile": f"FROM {spec.name}\n"}
        )
        return
    src = spec.config
    ModelConfig.objects.update_or_create(
        name=dest,
        defaults={
            f: getattr(src, f)
            for f in (
                "base",
                "parameters",
                "system",
                "template",
                "adapter_kernel",
                "license",
                "messages",
                "modelfile",
            )
        },
    )


def delete(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise BadRequest("model is required")
    deleted, _ = ModelConfig.objects.filter(name=full_name(name)).delete()
    if not deleted:
        if builtin(full_name(name)) is not None:
            raise BadRequest(f"'{full_name(name)}' is a built-in model and cannot be deleted")
        raise ModelNotFound(name)


# ---- interactions ------------------------------------------------------------------------------
@dataclass
class Client:
    user_id: int | None
    user_agent: str
    remote_addr: str


def record(
    endpoint: str,
    model: str,
    client: Client,
    response: str,
    stats: dict[str, Any],
    done_reason: str,
    prompt: str = "",
    messages: list[dict[str, Any]] | None = None,
) -> Interaction:
    """Store one answered request and tell the dashboard once it is committed."""
    with transaction.atomic():
        item = Interaction.objects.create(
            endpoint=endpoint,
            model=model,
            messages=messages or [],
            prompt=prompt,
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
        )
        from dashboard.services import publish_on_commit

        publish_on_commit("interactions", interaction_event(item))
    return item


_recording: set[asyncio.Task[None]] = set()  # interactions being stored after their response


def record_after(
    gen: Generation,
    endpoint: str,
    model: str,
    client: Client,
    response: str,
    final: Piece,
    prompt: str = "",
    messages: list[dict[str, Any]] | None = None,
) -> None:
    """`record` an answer (its text and its done piece) once its response has ended: Φ/κ from
    the hidden states, then the row, in the sync thread, off the client's stream (the Ollama and
    OpenAI endpoints, whose done lines carry no Φ/κ: their clients see the end of the stream ~5 ms
    sooner). Runs as a task of the event loop with a context of its own (not the finished
    request's thread); a failure is logged. Call from the event loop."""

    def store() -> None:
        stats = {**final.stats, **gen.reading()}
        record(endpoint, model, client, response, stats, final.done_reason, prompt, messages)

    async def run() -> None:
        await sync_to_async(store)()

    task = asyncio.get_running_loop().create_task(run(), context=contextvars.Context())
    _recording.add(task)
    task.add_done_callback(_recorded)


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
