"""Grammar-constrained decoding in the scheduler's batched step (llguidance): whatever the model,
a reply that ends parses and matches its schema; rows without a grammar are untouched."""

import json

import jsonschema
import pytest
import torch

from constellation.engine.config import TrunkConfig
from constellation.engine.coordizer import Coordizer
from constellation.engine.generation import Request, generate
from constellation.engine.grammar import ANY_OBJECT, GrammarError, Grammars
from constellation.engine.model import Trunk
from constellation.engine.sampling import SamplingOptions
from constellation.engine.scheduler import Scheduler

NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "role": {"enum": ["MEMORY", "REASONING", "ACTION"]},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "owner": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "admin": {"type": "boolean"}},
            "required": ["id", "admin"],
        },
    },
    "required": ["name", "role", "score", "tags", "owner"],
}


@pytest.fixture(scope="module")
def model(coordizer: Coordizer) -> tuple[Trunk, Grammars]:
    torch.manual_seed(0)  # untrained: its free choices are noise, the hardest case for a grammar
    cfg = TrunkConfig(
        vocab_size=coordizer.vocab_size, hidden=32, n_layers=2, n_heads=4, mlp_hidden=48
    )
    trunk = Trunk(cfg).eval()
    return trunk, Grammars(coordizer.tokenizer, cfg.vocab_size, coordizer.eot_id)


def opts(temperature: float, n: int = 160, seed: int = 0) -> SamplingOptions:
    return SamplingOptions(temperature=temperature, num_predict=n, seed=seed, repeat_penalty=1.0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_constrained_rows_parse_and_match_while_plain_rows_are_untouched(
    model: tuple[Trunk, Grammars], coordizer: Coordizer, temperature: float
) -> None:
    trunk, grammars = model
    prompt = coordizer.encode("Describe the kernel as JSON:")
    plain = Request(prompt, options=opts(temperature, 20, seed=5))
    alone = generate(trunk, [plain], eot_id=coordizer.eot_id)[0]
    sched = Scheduler(trunk, eot_id=coordizer.eot_id, max_batch=4)
    schemas = [NESTED, ANY_OBJECT, NESTED]
    tickets = [
        sched.submit(
            Request(prompt, options=opts(temperature, seed=i), grammar=grammars.constraint(s))
        )
        for i, s in enumerate(schemas)
    ]
    mixed = sched.submit(Request(prompt, options=opts(temperature, 20, seed=5)))
    sched.run_until_idle()
    assert mixed.tokens == alone  # a grammar in the batch changes nothing for the other rows
    for ticket, schema in zip(tickets, schemas, strict=True):
        text = coordizer.decode(ticket.tokens)
        assert ticket.done_reason == "stop", text
        jsonschema.validate(json.loads(text), schema)


def test_a_small_budget_still_closes_the_document(
    model: tuple[Trunk, Grammars], coordizer: Coordizer
) -> None:
    """The walk to the end starts when the budget left is what closing needs."""
    trunk, grammars = model
    sched = Scheduler(trunk, eot_id=coordizer.eot_id, max_batch=2)
    constraint = grammars.constraint(NESTED)
    need = constraint.need()
    ticket = sched.submit(
        Request(coordizer.encode("{"), options=opts(1.0, need + 4, 3), grammar=constraint)
    )
    sched.run_until_idle()
    assert ticket.done_reason == "stop" and len(ticket.tokens) <= need + 4
    jsonschema.validate(json.loads(coordizer.decode(ticket.tokens)), NESTED)


def test_a_walk_from_the_first_token_is_the_one_need_counted_and_asks_for_no_mask(
    model: tuple[Trunk, Grammars], coordizer: Coordizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget of just what closing takes: the row walks from its first token along `need`'s
    walk (no mask computed for it), and the document ends exactly when that walk does."""
    import constellation.engine.scheduler as module

    trunk, grammars = model
    masked: list[int] = []
    real = module.mask_logits

    def counted(matchers: list, logits: torch.Tensor) -> None:  # the real mask, counted
        masked.append(len(matchers))
        real(matchers, logits)

    monkeypatch.setattr(module, "mask_logits", counted)
    need = grammars.constraint(NESTED).need()  # tokens of the walk, then end of text
    sched = Scheduler(trunk, eot_id=coordizer.eot_id)
    ticket = sched.submit(
        Request(
            coordizer.encode("x"),
            options=opts(1.0, need - 1, 3),
            grammar=grammars.constraint(NESTED),
        )
    )
    sched.run_until_idle()
    assert ticket.done_reason == "stop" and len(ticket.tokens) == need - 1
    jsonschema.validate(json.loads(coordizer.decode(ticket.tokens)), NESTED)
    assert masked == []


def test_a_budget_below_what_closing_needs_ends_with_length(
    model: tuple[Trunk, Grammars], coordizer: Coordizer
) -> None:
    trunk, grammars = model
    sched = Scheduler(trunk, eot_id=coordizer.eot_id)
    ticket = sched.submit(
        Request(coordizer.encode("x"), options=opts(0.0, 3), grammar=grammars.constraint(NESTED))
    )
    sched.run_until_idle()
    assert ticket.done_reason == "length" and len(ticket.tokens) == 3


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"not": {"type": "string"}}, "not"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"if": {"type": "string"}, "then": {"minLength": 2}}, "if"),
        ({"type": "strange"}, "strange"),
    ],
)
def test_what_the_library_cannot_enforce_is_refused_by_name(
    model: tuple[Trunk, Grammars], schema: dict, named: str
) -> None:
    with pytest.raises(GrammarError, match=named):
        model[1].matcher(schema)


def test_the_direct_loop_refuses_a_grammar(
    model: tuple[Trunk, Grammars], coordizer: Coordizer
) -> None:
    trunk, grammars = model
    req = Request([1, 2], options=opts(0.0, 4), grammar=grammars.constraint(ANY_OBJECT))
    with pytest.raises(ValueError, match="scheduler"):
        generate(trunk, [req])
