"""Grammar-constrained decoding (Ollama's `format`, OpenAI's `response_format`): llguidance.

A request with a JSON schema gets its own `llguidance.LLMatcher`; at every step the scheduler asks
the matchers of the rows that have one for the tokens allowed next (one int32 bitmask row each,
filled in parallel by llguidance's executor), sets every other logit of those rows to −inf before
sampling, and feeds each row's token back to its matcher. End of text is allowed only where the
document is complete, so a reply that ends by itself always parses and matches the schema.

Why llguidance (and not xgrammar or outlines-core): `bench/grammar.py`, docs/inference.md. Its
JSON-schema compiler refuses what it cannot enforce (`not`, `if`/`then`, `uniqueItems`, …),
naming the keywords; that refusal is the API's 400.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

ANY_OBJECT: dict[str, Any] = {"type": "object"}  # `format: "json"`, `json_object`


VALUE_STARTS = ("0", '"', "[", "{", "t", "f", "n", "-")  # the shortest values start so
RECHECK = 8  # tokens between two reckonings of what closing the document takes
WALK_LIMIT = 4096


class GrammarError(ValueError):
    """A schema the grammar library cannot enforce, or that is not a JSON schema at all."""


class Grammars:
    """llguidance over one vocabulary: the tokenizer is read once (1–3 s, on first use), then
    each request's schema is compiled into a fresh matcher (~1 ms)."""

    def __init__(self, tokenizer: Tokenizer, n_vocab: int, eot_id: int) -> None:
        self._spec = (tokenizer.to_str(), n_vocab, eot_id)
        self.source, self.n_vocab = tokenizer, n_vocab
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._pieces: dict[int, str] = {}

    def piece(self, token: int) -> str:
        """The text of one token (structure characters are whole tokens' text in a byte-level
        vocabulary; half a UTF-8 character reads as U+FFFD, which is no structure)."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self.source.decode([token], skip_special_tokens=False)
        return text

    def token_of(self, text: str) -> int | None:
        """The token whose text is exactly `text` (a single character here), if there is one."""
        ids = self.source.encode(text, add_special_tokens=False).ids
        return ids[0] if len(ids) == 1 else None

    def _ready(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                import llguidance

                text, n_vocab, eot = self._spec
                self._tokenizer = llguidance.LLTokenizer(text, n_vocab=n_vocab, eos_token=eot)
            return self._tokenizer

    def constraint(self, schema: dict[str, Any]) -> Constraint:
        """What a request with `schema` is decoded under."""
        return Constraint(self.matcher(schema), self)

    def matcher(self, schema: dict[str, Any]) -> Any:
        """A fresh matcher for `schema`; `GrammarError` naming what it cannot enforce."""
        import llguidance

        tokenizer = self._ready()
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), overrides={"whitespace_flexible": False}
            )
        except (ValueError, TypeError) as exc:
            raise GrammarError(str(exc)) from None
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(_short(matcher.get_error()))
        return matcher


_executor: Any = None


def mask_logits(matchers: Sequence[Any], logits: Tensor) -> None:
    """Set the logits (len(matchers), V) that `matchers` disallow next to −inf, row by row; V is
    the vocabulary each matcher's tokenizer was built for (the trunk's)."""
    global _executor
    import llguidance
    import llguidance.torch as llt

    bits = torch.empty((len(matchers), (logits.shape[-1] + 31) // 32), dtype=torch.int32)
    if len(matchers) == 1:
        llt.fill_next_token_bitmask(matchers[0], bits, 0)
    else:
        if _executor is None:
            _executor = llguidance.LLExecutor()
        llt.fill_next_token_bitmask_par(_executor, [(m, i) for i, m in enumerate(matchers)], bits)
    # little-endian words: bit j of word w is token 32·w + j, as unpackbits' "little" reads them
    allowed = np.unpackbits(bits.numpy().view(np.uint8), axis=-1, bitorder="little")
    forbid = torch.from_numpy(allowed[:, : logits.shape[-1]] == 0).to(logits.device)
    logits.masked_fill_(forbid, float("-inf"))


class Constraint:
    """One request's grammar: its matcher, and where its JSON document stands (inside a string,
    which objects and arrays are open), read from the text of the tokens it was given.

    A weak model can write a string, an array or a number forever, and a document cut by the
    token budget does not parse. So the row also keeps, from time to time, how many tokens
    closing the document would take from here (`need`: the closing walk below, tried on a copy
    of the matcher); once the budget left is down to that, it stops sampling and walks: at each
    step the first of these that the grammar allows — the string's closing quote, the innermost
    bracket's closer, a comma (towards the next required key or item), the shortest start of a
    value (`0`, `""`, `[]`, `{}`, `true`, …) — where the grammar forces nothing, and where none
    of those is allowed (an enum's letters) the lowest allowed id. The walk is the same, step
    for step, as the one `need` counted, so it ends in time. Nothing changes while the budget
    is ample: a model that closes its document by itself is never walked."""

    def __init__(self, matcher: Any, vocab: Grammars) -> None:
        self.matcher, self.vocab = matcher, vocab
        self.in_string = self.escaped = False
        self.open: list[str] = []  # "{" and "[" not yet closed
        self.walking = False  # the budget is down to what closing takes: walk to the end
        self._need = 0  # the last closing length worked out, and when (tokens consumed)
        self._need_at = -1
        self.consumed = 0

    def closing(self, remaining: int) -> bool:
        """Whether to walk to the end now, with `remaining` tokens of budget left."""
        if self.walking:
            return True
        fresh = self.consumed - self._need_at < RECHECK
        near = remaining <= 2 * self._need + RECHECK
        if self._need_at < 0 or (near and not fresh) or remaining <= self._need + 1:
            self._need, self._need_at = self.need(), self.consumed
        self.walking = remaining <= self._need + 1
        return self.walking

    def preferred(self) -> list[str]:
        if self.in_string:
            return ['"']
        return [*({"{": "}", "[": "]"}[c] for c in self.open[-1:]), ",", *VALUE_STARTS]

    def closer(self, logits: Tensor) -> int | None:
        """The walk's next token (`logits`: the row's, masked: what the grammar allows)."""
        return self._walk_step((logits != float("-inf")).cpu().numpy())

    def need(self) -> int:
        """Tokens the closing walk takes from here to a whole document (end of text included);
        a large number when it cannot tell."""
        walk = Constraint(self.matcher.deep_copy(), self.vocab)
        walk.in_string, walk.escaped, walk.open = self.in_string, self.escaped, list(self.open)
        steps = 0
        while not walk.matcher.is_accepting() and steps < WALK_LIMIT:
            bitmask = walk.matcher.compute_bitmask()
            bits = np.unpackbits(np.frombuffer(bitmask, dtype=np.uint8), bitorder="little")
            tok = walk._walk_step(bits[: self.vocab.n_vocab].astype(bool))
            if tok is None or not walk.consume(tok):
                return WALK_LIMIT
            steps += 1
        return steps + 1

    def _walk_step(self, allowed: np.ndarray) -> int | None:
        """One step of the walk: a token the grammar forces, else the first allowed of the
        preferred ones, else the lowest allowed id."""
        forced = self.matcher.compute_ff_tokens()
        if forced:
            return int(forced[0])
        for text in self.preferred():
            tok = self.vocab.token_of(text)
            if tok is not None and tok < allowed.size and allowed[tok]:
                return tok
        found = np.flatnonzero(allowed)
        return int(found[0]) if found.size else None

    def consume(self, token: int) -> bool:
        """Feed the token to the matcher (False: the grammar refused it) and follow its text."""
        if not self.matcher.consume_token(token):
            return False
        self.consumed += 1
        for ch in self.vocab.piece(token):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.open.append(ch)
            elif ch in "}]" and self.open:
                self.open.pop()
        return True

    @property
    def stopped(self) -> bool:
        return bool(self.matcher.is_stopped())

    def error(self) -> str:
        return _short(self.matcher.get_error())


def _short(error: str) -> str:
    """llguidance's message without its stack of context lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines[:3])[:400] or "the schema was refused"
