"""The one JSON reader for request bodies: the Ollama and OpenAI views, the app's chat, the REST
API (`StrictJSONParser`) and the dashboard's websocket.

Python's `json` accepts what no client should send and what the code behind it cannot hold:
`NaN`, `Infinity` and `-Infinity` literals, `1e400` (read as infinity), integers of thousands of
digits (past 4,300 digits `json` raises a plain `ValueError`), and nesting deep enough to raise
`RecursionError`. Each of those became a 500 with Django's HTML page. Here each is an
`InvalidJSON` whose text says what was wrong, and the views answer it with 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Deeper than any request of ours needs (a chat's messages with tool calls nest 6 levels).
MAX_DEPTH = 64
# Integers the engine and the database can hold: int64's range, and uint64's top for seeds.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1
# More digits than MAX_INT has cannot be in range: refuse before converting.
_MAX_DIGITS = len(str(MAX_INT))


class InvalidJSON(ValueError):
    """A body that is not JSON (`syntax`), or JSON with a value no request may carry."""

    def __init__(self, message: str, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def _no_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS or not MIN_INT <= (value := int(text)) <= MAX_INT:
        raise InvalidJSON(f"integer {text[:40]}{'…' if len(text) > 40 else ''} is out of range")
    return value


class _Refused(str):
    """A number `loads` refused, kept (second pass) to find where it was."""


def _where(raw: str | bytes) -> str:
    """The path of the first refused number in `raw` (`options.seed`, `messages[2].x`), or ""."""
    value = json.loads(
        raw, parse_constant=_Refused, parse_float=_mark(_float), parse_int=_mark(_int)
    )
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop(0)
        if isinstance(item, _Refused):
            return path
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return ""


def _mark(convert: Any) -> Any:
    def marked(text: str) -> Any:
        try:
            return convert(text)
        except InvalidJSON:
            return _Refused(text)

    return marked


def depth(value: Any) -> int:
    """How deeply `value` nests lists and objects (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def loads(raw: str | bytes) -> Any:
    """The JSON value of `raw`, or `InvalidJSON` saying why not (json's own message and position
    for a syntax error)."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise InvalidJSON(f"nested more than {MAX_DEPTH} levels deep") from None
    except InvalidJSON as exc:
        where = _where(raw)
        raise InvalidJSON(f"{where}: {exc}" if where else str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (line {exc.lineno} column {exc.colno})", True) from None
    except (ValueError, UnicodeDecodeError) as exc:  # not UTF-8
        raise InvalidJSON(f"not UTF-8: {exc}", True) from None
    if depth(value) > MAX_DEPTH:
        raise InvalidJSON(f"nested more than {MAX_DEPTH} levels deep")
    return value


class StrictJSONParser(JSONParser):
    """DRF's JSON parser reading through `loads`: a bad body is a 400 ParseError, never a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        if stream is None:
            return None
        try:
            return loads(stream.read())
        except InvalidJSON as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
