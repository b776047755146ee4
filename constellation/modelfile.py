"""Modelfile parsing for `/api/create` (Ollama's format; this project's own PARAMETERs too)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from constellation.engine import e8

STANDARD = {
    "num_ctx": int,
    "repeat_last_n": int,
    "repeat_penalty": float,
    "temperature": float,
    "seed": int,
    "stop": str,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
}
OWN = {
    "constellation_size": str,
    "roles": str,
    "sync_endpoint": str,
    "federation_enabled": bool,
    "central_node": str,
    "sync_interval": int,
    "autonomous_learning": bool,
    "learning_interval": int,
    "ignore_eos": bool,
}
INSTRUCTIONS = {"from", "parameter", "system", "template", "adapter", "license", "message"}


class ModelfileError(ValueError):
    pass


@dataclass
class Modelfile:
    base: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str = ""
    template: str = ""
    adapter_kernel: int | None = None
    license: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    quantization: str = ""  # `/api/create`'s quantize (not a Modelfile instruction), e.g. q8_0


def _value(kind: type, name: str, raw: str) -> Any:
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ModelfileError(f"PARAMETER {name}: expected true or false, got {raw!r}")
        return raw.lower() in ("true", "1")
    try:
        return kind(raw)
    except ValueError:
        raise ModelfileError(f"PARAMETER {name}: invalid value {raw!r}") from None


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _lines(text: str) -> list[tuple[str, str]]:
    """(instruction, argument) pairs; `\"\"\"` values may span lines."""
    out: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        # MESSAGE's text follows its role: `MESSAGE user """…"""`
        head, _, value = rest.partition(" ") if word.lower() == "message" else ("", "", rest)
        if value.lstrip().startswith('"""'):
            body = value.lstrip()[3:]
            while '"""' not in body and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            if '"""' not in body:
                raise ModelfileError(f'{word.upper()}: unterminated """')
            rest = (f"{head} " if head else "") + body[: body.index('"""')]
        out.append((word.lower(), rest))
    return out


def parse(text: str) -> Modelfile:
    mf = Modelfile()
    for word, arg in _lines(text):
        if word not in INSTRUCTIONS:
            raise ModelfileError(f"unknown instruction: {word.upper()}")
        if word == "from":
            mf.base = _unquote(arg)
        elif word == "parameter":
            name, _, raw = arg.partition(" ")
            add_parameter(mf, name, _unquote(raw))
        elif word == "system":
            mf.system = _unquote(arg) if not arg.startswith("\n") else arg
        elif word == "template":
            mf.template = arg if "\n" in arg else _unquote(arg)
        elif word == "license":
            mf.license = arg
        elif word == "message":
            role, _, content = arg.partition(" ")
            add_message(mf, role, content if "\n" in content else _unquote(content))
        elif word == "adapter":
            mf.adapter_kernel = kernel_of(_unquote(arg))
    if not mf.base:
        raise ModelfileError("no FROM line")
    return mf


def add_parameter(mf: Modelfile, name: str, raw: str) -> None:
    """`PARAMETER name raw` (the JSON form's `parameters` too): typed as the parameter is;
    repeatable `stop`; unknown names ignored, as elsewhere."""
    name = name.lower()
    kind = STANDARD.get(name) or OWN.get(name)
    if kind is None:
        return
    value = _value(kind, name, raw)
    if name == "stop":
        mf.parameters.setdefault("stop", []).append(value)
    elif name == "constellation_size" and value not in e8.PRESETS:
        raise ModelfileError(
            f"PARAMETER constellation_size: expected one of {', '.join(e8.PRESETS)}"
        )
    else:
        mf.parameters[name] = value


MESSAGE_ROLES = ("system", "user", "assistant")


def add_message(mf: Modelfile, role: str, content: str) -> None:
    """`MESSAGE role content` (the JSON form's `messages` too): a turn every chat starts with."""
    if role not in MESSAGE_ROLES:
        raise ModelfileError(f"MESSAGE: invalid role {role!r}: expected {', '.join(MESSAGE_ROLES)}")
    mf.messages.append({"role": role, "content": content})


KERNEL_NAME = re.compile(r"^qig-kernel-(\d+)(?:-([a-z]+))?(?::latest)?$", re.IGNORECASE)


def kernel_of(text: str) -> int:
    """An ADAPTER argument: a kernel index, a `qig-kernel-<id>-<role>` name or a role."""
    text = text.strip()
    match = KERNEL_NAME.match(text)
    if text.isdigit() or match:
        index = int(text) if text.isdigit() else int(match.group(1))  # type: ignore[union-attr]
        if not 0 <= index < e8.N_ROOTS:
            raise ModelfileError(f"ADAPTER: kernel {index} is not in 0..{e8.N_ROOTS - 1}")
        return index
    try:
        return e8.kernel_for_role(text.upper())
    except (KeyError, ValueError):
        raise ModelfileError(
            f"ADAPTER: {text!r} names no kernel (an index, name or role)"
        ) from None


def render(mf: Modelfile) -> str:
    """The canonical Modelfile text (`/api/show`'s `modelfile`)."""
    lines = [f"FROM {mf.base}"]
    if mf.adapter_kernel is not None:
        lines.append(f"ADAPTER {mf.adapter_kernel}")
    if mf.template:
        lines.append(f'TEMPLATE """{mf.template}"""')
    if mf.system:
        lines.append(f'SYSTEM """{mf.system}"""')
    for name, value in mf.parameters.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {name} {str(v).lower() if isinstance(v, bool) else v}")
    for message in mf.messages:
        text = message["content"]
        quoted = f'"""{text}"""' if "\n" in text else text
        lines.append(f"MESSAGE {message['role']} {quoted}")
    if mf.license:
        lines.append(f'LICENSE """{mf.license}"""')
    return "\n".join(lines) + "\n"
