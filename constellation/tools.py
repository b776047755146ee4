"""Tool calls (Ollama's `tools`, OpenAI's `tools` / `tool_choice`), decided by the model under a
grammar: the reply is either text or `<tool_call>` followed by one JSON call `{"name": …,
"arguments": {…}}` whose name is one of the tools offered and whose arguments match that tool's
`parameters` schema (llguidance's `%json` in a lark grammar, `constellation/engine/grammar.py`).

- `auto` (Ollama's only mode): the model chooses — text, or the call marker and then a call that
  is bound to be valid; its first token decides.
- `required` / a named function (OpenAI): the reply is a call (of that function).
- `none` (OpenAI): plain text; the tools are not offered.

The tools are described to the model in a system message (`offer`); a reply that is a call comes
back as `tool_calls` (`parse`), never as text.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from constellation.errors import BadRequest

MARK = "<tool_call>"
COMPACT = {"x-guidance": {"whitespace_flexible": False}}


@dataclass
class ToolPlan:
    tools: list[dict[str, Any]]  # {"name", "description", "parameters"} each
    required: bool  # the reply must be a call

    @property
    def grammar(self) -> str:
        """The lark grammar of a reply: a call, or (unless required) text that is not one."""
        variants = [
            {
                "type": "object",
                "properties": {"name": {"const": t["name"]}, "arguments": t["parameters"]},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in self.tools
        ]
        call = json.dumps({"anyOf": variants, **COMPACT})
        rules = f'call: "{MARK}" %json {call}\n'
        if self.required:
            return "start: call\n" + rules
        return "start: TEXT | call\n" + rules + "TEXT: /[^<](.|\\n)*/\n"

    def offer(self) -> dict[str, str]:
        """The system message that tells the model what it may call and how."""
        lines = [f"You may call one of these tools by answering {MARK} and a JSON object"]
        lines.append(
            '{"name": <tool>, "arguments": {…}}' + (":" if self.required else ", or answer:")
        )
        for t in self.tools:
            params = ", ".join((t["parameters"].get("properties") or {}).keys())
            lines.append(f"- {t['name']}({params}): {t['description'][:80]}")
        return {"role": "system", "content": "\n".join(lines)}


def plan(tools: Any, choice: Any = "auto") -> ToolPlan | None:
    """The tools a request offers, checked (400 naming what is wrong); None: no tools."""
    if tools is None or tools == []:
        return None
    if not isinstance(tools, list):
        raise BadRequest("invalid value for field 'tools': expected a list")
    offered = [_tool(i, t) for i, t in enumerate(tools)]
    if choice == "none":
        return None
    if choice in ("auto", None):
        return ToolPlan(offered, False)
    if choice == "required":
        return ToolPlan(offered, True)
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise BadRequest('tool_choice: "none", "auto", "required" or {"type": "function", …}')
    named = [t for t in offered if t["name"] == name]
    if not named:
        raise BadRequest(f"tool_choice: no tool named {name!r} in tools")
    return ToolPlan(named, True)


def _tool(i: int, tool: Any) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or tool.get("type", "function") != "function":
        raise BadRequest(f'tools[{i}]: expected {{"type": "function", "function": {{…}}}}')
    name, params = fn.get("name"), fn.get("parameters") or {"type": "object"}
    if not isinstance(name, str) or not name:
        raise BadRequest(f"tools[{i}].function.name: expected a non-empty string")
    if not isinstance(params, dict):
        raise BadRequest(f"tools[{i}].function.parameters: expected a JSON schema object")
    description = fn.get("description") or ""
    return {"name": name, "description": str(description), "parameters": params}


def parse(text: str) -> list[dict[str, Any]] | None:
    """The call in a reply (`[{"name", "arguments"}]`), or None for a text reply (or a call cut
    short by the token budget, which stays text)."""
    if not text.startswith(MARK):
        return None
    try:
        call = json.loads(text[len(MARK) :])
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    return [{"name": call["name"], "arguments": call.get("arguments") or {}}]


def history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the model reads them: an assistant's earlier calls as the text it wrote for
    them, a tool's result under its name."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if m.get("role") == "assistant" and isinstance(calls, list) and calls:
            fn = calls[0].get("function", {}) if isinstance(calls[0], dict) else {}
            args = fn.get("arguments", {})
            if isinstance(args, str):  # OpenAI's: a JSON text
                with contextlib.suppress(ValueError):
                    args = json.loads(args) if args.strip() else {}
            written = MARK + json.dumps({"name": fn.get("name"), "arguments": args})
            m = {**m, "content": (m.get("content") or "") + written}
        elif m.get("role") == "tool" and m.get("tool_name"):
            m = {**m, "content": f"[{m['tool_name']}] {m.get('content') or ''}"}
        out.append(m)
    return out


class CallBuffer:
    """A streamed reply's text, held while it may still be a call (a prefix of the marker, or the
    marker and what follows): text goes out as soon as it cannot be one."""

    def __init__(self) -> None:
        self.held = ""
        self.text = False  # it is text: pass everything on

    def feed(self, piece: str) -> str:
        """The text to send now."""
        if self.text:
            return piece
        self.held += piece
        if MARK.startswith(self.held) or self.held.startswith(MARK):
            return ""
        self.text, out, self.held = True, self.held, ""
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]] | None]:
        """At the end: (text still held, the calls when the reply was one)."""
        calls = None if self.text else parse(self.held)
        return ("", calls) if calls else (self.held, None)
