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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

ANY_OBJECT: dict[str, Any] = {"type": "object"}  # `format: "json"`, `json_object`


VALUE_STARTS = ("0", '"', "[", "{", "t", "f", "n", "-")  # the shortest values start so
# tokens between two reckonings of what closing the document takes, at least: half the budget
# the last one left to spare when that is more (a jump in what closing takes — a new array item,
# an object value — is caught with as many tokens to spare as at the tightest of this interval)
RECHECK = 8
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
        self._singles: dict[str, int | None] = {}

    def piece(self, token: int) -> str:
        """The text of one token (structure characters are whole tokens' text in a byte-level
        vocabulary; half a UTF-8 character reads as U+FFFD, which is no structure)."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self.source.decode([token], skip_special_tokens=False)
        return text

    def token_of(self, text: str) -> int | None:
        """The token whose text is exactly `text` (a single character here), if there is one."""
        if text not in self._singles:
            ids = self.source.encode(text, add_special_tokens=False).ids
            self._singles[text] = ids[0] if len(ids) == 1 else None
        return self._singles[text]

    def _ready(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                import llguidance

                text, n_vocab, eot = self._spec
                self._tokenizer = llguidance.LLTokenizer(text, n_vocab=n_vocab, eos_token=eot)
            return self._tokenizer

    def constraint(self, schema: dict[str, Any] | str, json_after: str = "") -> Constraint:
        """What a request with a JSON `schema`, or a lark grammar (a text), is decoded under;
        `json_after`: the text before which the reply is not JSON (see `Constraint`)."""
        return Constraint(self.matcher(schema), self, json_after)

    def matcher(self, schema: dict[str, Any] | str) -> Any:
        """A fresh matcher for a JSON `schema` or a lark grammar (a text); `GrammarError`
        naming what it cannot enforce."""
        import llguidance

        tokenizer = self._ready()
        try:
            if isinstance(schema, str):
                grammar = llguidance.LLMatcher.grammar_from_lark(schema)
            else:
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

    # what llguidance.torch's fill_next_token_bitmask(_par) do, into a contiguous int32 buffer;
    # that module is not imported: it wraps a kernel in torch.compile at import, which imports
    # torch._dynamo (3–7 s here, paid by the first structured request's first masked step)
    words = (logits.shape[-1] + 31) // 32
    bits = np.empty((len(matchers), words), dtype=np.int32)  # every word is written
    if len(matchers) == 1:
        matchers[0].unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)
    else:
        if _executor is None:
            _executor = llguidance.LLExecutor()
        pairs = [(m, i) for i, m in enumerate(matchers)]
        _executor.unsafe_compute_mask_ptr(pairs, bits.ctypes.data, words * 4, len(matchers))
    # little-endian words: bit j of word w is token 32·w + j, as unpackbits' "little" reads them
    allowed = np.unpackbits(bits.view(np.uint8), axis=-1, bitorder="little")
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
    of those is allowed (an enum's letters) the lowest allowed id. `need` keeps the tokens it
    walked, and the walk, which starts right after a `need` from where it stands, follows them:
    it is the one `need` counted, so it ends in time, and its steps ask the grammar nothing.
    Nothing changes while the budget is ample: a model that closes its document by itself is
    never walked."""

    def __init__(self, matcher: Any, vocab: Grammars, json_after: str = "") -> None:
        self.matcher, self.vocab = matcher, vocab
        # A grammar whose reply may be text (tools: text, or a marker and a JSON call) is JSON,
        # and closed in time, only once the reply began with `json_after`; text is left alone.
        self.lead: str | None = json_after
        self.json = not json_after
        self.seen = ""
        self.in_string = self.escaped = False
        self.open: list[str] = []  # "{" and "[" not yet closed
        self.walking = False  # the budget is down to what closing takes: walk to the end
        self._need = 0  # the last closing length worked out, when (tokens consumed), and the
        self._need_at = -1  # budget it left to spare then
        self._spare = 0
        self._plan: list[int] = []  # the tokens of the last closing walk, from where it began
        self._plan_at = 0
        self.consumed = 0

    def closing(self, remaining: int) -> bool:
        """Whether to walk to the end now, with `remaining` tokens of budget left."""
        if self.walking:
            return True
        if not self.json:
            return False
        fresh = self.consumed - self._need_at < max(RECHECK, self._spare // 2)
        near = remaining <= 2 * self._need + RECHECK
        if self._need_at < 0 or (near and not fresh) or remaining <= self._need + 1:
            self._need, self._need_at = self.need(), self.consumed
            self._spare = remaining - self._need
        self.walking = remaining <= self._need + 1
        return self.walking

    def preferred(self) -> list[str]:
        if self.in_string:
            return ['"']
        return [*({"{": "}", "[": "]"}[c] for c in self.open[-1:]), ",", *VALUE_STARTS]

    def planned(self) -> int | None:
        """While walking: the next token of `need`'s walk, which began where this one did (the
        grammar allows it: the walk went through a copy of this matcher)."""
        k = self.consumed - self._plan_at
        return self._plan[k] if self.walking and 0 <= k < len(self._plan) else None

    def closer(self, logits: Tensor) -> int | None:
        """The walk's next token (`logits`: the row's, masked: what the grammar allows): the
        planned one, or, where that is not allowed (never so far), a step from here."""
        tok = self.planned()
        if tok is not None and logits[tok] != float("-inf"):
            return tok
        self._plan = []
        allowed = (logits != float("-inf")).cpu().numpy()
        step = self._walk_step(lambda tok: tok < allowed.size and allowed[tok], lambda: allowed)
        return step[0] if step else None

    def need(self) -> int:
        """Tokens the closing walk takes from here to a whole document (end of text included);
        a large number when it cannot tell. The walk's tokens are kept for the walk itself."""
        walk = Constraint(self.matcher.deep_copy(), self.vocab)
        walk.in_string, walk.escaped, walk.open = self.in_string, self.escaped, list(self.open)
        plan: list[int] = []
        while not walk.matcher.is_accepting() and len(plan) < WALK_LIMIT:
            step = walk._walk_step(*_bitmask_of(walk.matcher, self.vocab.n_vocab))
            if not step or not walk.consume(*step):
                self._plan = []
                return WALK_LIMIT
            plan += step
        self._plan, self._plan_at = plan, self.consumed
        return len(plan) + 1

    def _walk_step(
        self, allows: Callable[[int], bool], allowed: Callable[[], np.ndarray]
    ) -> list[int]:
        """The walk's next tokens: those the grammar forces (several at once), else the first
        allowed of the preferred ones, else the lowest allowed id (`allowed()`, the whole mask,
        is asked for only then); none when nothing is allowed."""
        forced = self.matcher.compute_ff_tokens()
        if forced:
            return [int(tok) for tok in forced]
        for text in self.preferred():
            tok = self.vocab.token_of(text)
            if tok is not None and allows(tok):
                return [tok]
        found = np.flatnonzero(allowed())
        return [int(found[0])] if found.size else []

    def consume(self, *tokens: int) -> bool:
        """Feed the tokens to the matcher (False: the grammar refused them) and follow their
        text."""
        if not self.matcher.consume_tokens(list(tokens)):
            return False
        self.consumed += len(tokens)
        text = "".join(self.vocab.piece(token) for token in tokens)
        if not self.json:
            if self.lead is None:  # text: nothing to follow
                return True
            self.seen += text
            if not self.seen.startswith(self.lead):
                if not self.lead.startswith(self.seen):
                    self.lead = None
                return True
            self.json, text = True, self.seen[len(self.lead) :]
        for ch in text:
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


def _bitmask_of(
    matcher: Any, n_vocab: int
) -> tuple[Callable[[int], bool], Callable[[], np.ndarray]]:
    """Whether the matcher allows a token next, and the whole mask (one bool per token id);
    its bitmask is computed on the first question (a forced step asks none)."""
    memo: list[bytes] = []

    def bitmask() -> bytes:  # little-endian int32 words: bit t of byte t // 8 is token t
        if not memo:
            memo.append(matcher.compute_bitmask())
        return memo[0]

    def allows(token: int) -> bool:
        bits = bitmask()
        return token < 8 * len(bits) and bool(bits[token >> 3] >> (token & 7) & 1)

    def allowed() -> np.ndarray:
        bits = np.unpackbits(np.frombuffer(bitmask(), dtype=np.uint8), bitorder="little")
        return bits[:n_vocab].astype(bool)

    return allows, allowed


def _short(error: str) -> str:
    """llguidance's message without its stack of context lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines[:3])[:400] or "the schema was refused"
