"""The models this node serves, as every endpoint names them: the built-in names (the
constellation's presets and each kernel), the model configs made with `/api/create`, and what
`/api/tags` and `/api/show` say of them. A name resolves to a `ModelSpec`: what to run. No HTTP
here; errors are `constellation.errors` types."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from constellation import modelfile
from constellation.engine import e8
from constellation.errors import BadRequest, ModelNotFound, Unavailable
from constellation.models import ModelConfig
from constellation.published import ModelFiles, bootstrap_progress, kernel_adapter_dirs, model_files

FAMILY = "qig"
CONSTELLATION = "qig-constellation"
PRESET_TAGS = ("latest", *e8.PRESETS)
KERNEL_MODEL = re.compile(r"^qig-kernel-(\d+)-([a-z]+):latest$")
MAX_BASE_DEPTH = 8
# A name as Ollama's: [host/][namespace/]model[:tag], each part a letter or digit and then
# letters, digits, `_`, `.`, `-` (so no `..`, no leading `/`), at most 80 characters a part.
_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}"
MODEL_NAME = re.compile(rf"^(?:{_PART}/){{0,2}}{_PART}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,79}})?$")
# `/api/create`'s quantize levels (Ollama's names) → the engine's (`Trunk.quantized`): q8_0 is
# per-channel int8 trunk weights with full-precision LoRA (docs/engine.md, "Int8 weights")
QUANTIZE_LEVELS = {"q8_0": "int8"}


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
    quantization: str = ""  # a QUANTIZE_LEVELS key; "": the trunk as loaded

    @property
    def engine_quantization(self) -> str | None:
        """What the engine serves it with (`Constellation.trunk_for`): None or "int8"."""
        return QUANTIZE_LEVELS[self.quantization] if self.quantization else None


def quantize_level(raw: Any) -> str:
    """`/api/create`'s quantize, checked: a QUANTIZE_LEVELS key ("" for none)."""
    if raw is None or raw == "":
        return ""
    level = raw.strip().lower() if isinstance(raw, str) else raw
    if level not in QUANTIZE_LEVELS:
        raise BadRequest(
            f"invalid value for field 'quantize': {str(raw)[:40]!r}: accepted values: "
            f"{', '.join(QUANTIZE_LEVELS)} (int8 trunk weights; the LoRA adapters stay full "
            "precision)"
        )
    return str(level)


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
        spec.quantization = cfg.quantization or spec.quantization  # a quantised base's too
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


# ---- listing -----------------------------------------------------------------------------------
def details(files: ModelFiles | None, parent: str = "", quantization: str = "") -> dict[str, Any]:
    params = files.parameters if files else 0
    size = f"{params / 1e6:.1f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"
    return {
        "parent_model": parent,
        "format": "safetensors",
        "family": FAMILY,
        "families": [FAMILY],
        "parameter_size": size,
        "quantization_level": quantization.upper() or served_level(),
    }


def served_level() -> str:
    """The dtype an unquantised model is served in (`inference`'s load: bf16 on a GPU and on a
    CPU with native bf16, fp32 elsewhere), whatever the trunk is stored in."""
    from constellation.engine import default_inference_dtype, dtype_level

    return dtype_level(default_inference_dtype())


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat()


def model_names() -> list[tuple[str, str, str]]:
    """(name, parent, quantization) of every model this node serves: a config's quantization is
    its own or, when it has none, its nearest base's (as `resolve` finds it)."""
    names = [(f"{CONSTELLATION}:{tag}", "", "") for tag in PRESET_TAGS]
    kernels = set(kernel_adapter_dirs()) | set(e8.preset_kernels("minimal"))
    names += [(kernel_model_name(k), "", "") for k in sorted(kernels)]
    configs = {c.name: c for c in ModelConfig.objects.all()}
    for config in configs.values():
        level, current, depth = config.quantization, configs.get(full_name(config.base)), 0
        while not level and current is not None and depth <= MAX_BASE_DEPTH:
            level, current = current.quantization, configs.get(full_name(current.base))
            depth += 1
        names.append((config.name, full_name(config.base), level))
    return names


CAPABILITIES = ["completion", "tools", "embedding"]  # no thinking: refused (prompts.py)


def digest_of(name: str, files: ModelFiles) -> str:
    """A model's digest, the same in /api/tags, /api/ps and /api/show: the name over the
    published files' digest (it changes when the trunk or an adapter does)."""
    return hashlib.sha256(f"{full_name(name)}|{files.digest}".encode()).hexdigest()


def tags() -> list[dict[str, Any]]:
    files = model_files()
    if files is None:
        return []
    entries = []
    for name, parent, quantization in model_names():
        entries.append(
            {
                "name": name,
                "model": name,
                "modified_at": iso(files.modified),
                "size": files.size,
                "digest": digest_of(name, files),
                "details": details(files, parent, quantization),
                "capabilities": CAPABILITIES,
            }
        )
    return entries


def show(spec: ModelSpec) -> dict[str, Any]:
    files = model_files()
    if files is None:
        raise Unavailable(f"no trained model yet: {bootstrap_progress()}")
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
        "details": details(
            files, full_name(spec.config.base) if spec.config else "", spec.quantization
        ),
        "model_info": {
            "general.architecture": FAMILY,
            "general.parameter_count": files.parameters,
            "qig.context_length": files.context_length,
            "qig.kernel": spec.kernel,
            "qig.constellation_size": spec.preset,
            "qig.adapters": files.adapters,
        },
        "capabilities": CAPABILITIES,
        "modified_at": iso(spec.config.modified_at.timestamp() if spec.config else files.modified),
    }


# ---- configs -----------------------------------------------------------------------------------
CONFIG_FIELDS = (
    "base",
    "parameters",
    "system",
    "template",
    "adapter_kernel",
    "license",
    "messages",
    "quantization",
    "modelfile",
)


def new_name(name: Any) -> str:
    """The full name for a config to be made (`/api/create`, `/api/copy`'s destination), valid as
    Ollama's names are and not a built-in's; `BadRequest` otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("model is required")
    if not MODEL_NAME.match(name.strip()) or ".." in name:
        raise BadRequest(
            f"invalid model name {name[:100]!r}: [namespace/]model[:tag], each part starting "
            "with a letter or digit, then letters, digits, '_', '.' or '-' (80 at most)"
        )
    name = full_name(name)
    if builtin(name) is not None:
        raise BadRequest(f"'{name}' is a built-in model")
    return name


def check_base(name: str, base: str) -> None:
    """`name FROM base` must reach a built-in model through existing configs, without passing
    through `name` itself (a cycle) and within MAX_BASE_DEPTH configs."""
    chain, current = [name], full_name(base)
    while builtin(current) is None:
        if current in chain:
            raise BadRequest(f"FROM {base} makes a cycle: {' → '.join([*chain, current])}")
        if len(chain) > MAX_BASE_DEPTH:
            raise BadRequest(f"FROM {base} is more than {MAX_BASE_DEPTH} configs deep")
        parent = ModelConfig.objects.filter(name=current).first()
        if parent is None:
            raise ModelNotFound(base)
        chain.append(current)
        current = full_name(parent.base)


def prepare(name: Any, text: Any, **fields: Any) -> tuple[str, modelfile.Modelfile]:
    """A config `/api/create` is to make, checked, nothing written: (its full name, its
    Modelfile). `text`: a Modelfile; without one, the JSON form's `fields` (`from`, `parameters`,
    `system`, `template`, `messages`, `license`). `BadRequest` for what is invalid,
    `ModelNotFound` for a base that is not there."""
    name = new_name(name)
    try:
        written = isinstance(text, str) and text.strip()
        mf = modelfile.parse(text) if written else _json_form(fields)
    except modelfile.ModelfileError as exc:
        raise BadRequest(str(exc)) from None
    check_base(name, mf.base)  # the base must exist (404 otherwise), and no cycle
    return name, mf


def _json_form(fields: dict[str, Any]) -> modelfile.Modelfile:
    """The Modelfile the JSON form's fields describe, each checked as its instruction is."""
    for key in ("from", "system", "template"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise BadRequest(f"invalid value for field {key!r}: expected a string")
    base = (fields.get("from") or "").strip()
    if not base:
        raise BadRequest("a Modelfile (modelfile) or from is required")
    mf = modelfile.Modelfile(
        base=base,
        system=fields.get("system") or "",
        template=fields.get("template") or "",
    )
    parameters = fields.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("invalid value for field 'parameters': expected an object")
    for key, value in parameters.items():
        for v in value if isinstance(value, list) else [value]:
            modelfile.add_parameter(mf, key, str(v).lower() if isinstance(v, bool) else str(v))
    messages = fields.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("invalid value for field 'messages': expected a list of objects")
    for m in messages:
        if not isinstance(m.get("content", ""), str):
            raise BadRequest("invalid value for field 'messages': content must be a string")
        modelfile.add_message(mf, m.get("role"), m.get("content") or "")
    license = fields.get("license") or ""
    licenses = license if isinstance(license, list) else [license]
    if not all(isinstance(text, str) for text in licenses):
        raise BadRequest("invalid value for field 'license': a string or a list of strings")
    mf.license = "\n\n".join(licenses)
    return mf


def save(name: str, mf: modelfile.Modelfile) -> ModelConfig:
    """Write the config `prepare` checked (a config of that name is replaced)."""
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
            "quantization": mf.quantization,
            "modelfile": modelfile.render(mf),
        },
    )
    return config


def create(name: Any, text: Any, **fields: Any) -> ModelConfig:
    """`prepare`, then `save`: a config with nothing else to make."""
    return save(*prepare(name, text, **fields))


def copy(source: Any, destination: Any) -> None:
    if not isinstance(source, str) or not isinstance(destination, str) or not destination:
        raise BadRequest("source and destination are required")
    dest = new_name(destination)
    spec = resolve(source)
    if spec.config is None:
        ModelConfig.objects.update_or_create(
            name=dest, defaults={"base": spec.name, "modelfile": f"FROM {spec.name}\n"}
        )
        return
    src = spec.config
    check_base(dest, src.base)  # copying b (FROM a) onto a would make a FROM a
    ModelConfig.objects.update_or_create(
        name=dest, defaults={f: getattr(src, f) for f in CONFIG_FIELDS}
    )


def delete(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise BadRequest("model is required")
    deleted, _ = ModelConfig.objects.filter(name=full_name(name)).delete()
    if not deleted:
        if builtin(full_name(name)) is not None:
            raise BadRequest(f"'{full_name(name)}' is a built-in model and cannot be deleted")
        raise ModelNotFound(name)
