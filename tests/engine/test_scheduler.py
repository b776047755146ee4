"""Continuous batching: requests that join mid-flight get exactly what they get alone."""

import threading

import pytest
import torch

from constellation.engine.config import LoRAConfig, TrunkConfig
from constellation.engine.generation import Request, generate
from constellation.engine.model import Adapter, KVCache, LoRABank, LoRARoute, Trunk
from constellation.engine.sampling import SamplingOptions
from constellation.engine.scheduler import Scheduler

CFG = TrunkConfig(vocab_size=97, hidden=32, n_layers=2, n_heads=4, mlp_hidden=48, max_seq_len=64)
LORA = LoRAConfig(rank=4)
EOT = 53  # a token the sampled request below produces mid-way, so "stop" is exercised


@pytest.fixture
def setup():
    torch.manual_seed(0)
    trunk = Trunk(CFG).eval()
    with torch.no_grad():
        trunk.embed.weight.mul_(5)
    bank = LoRABank(CFG, LORA, n_slots=3)
    for k in (3, 4):
        ad = Adapter(CFG, LORA, seed=k)
        with torch.no_grad():
            for p in ad.b.values():
                p.normal_(0, 0.3)
        bank.load(k, ad)
    return trunk, bank


def requests():
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=9)
    sampled = SamplingOptions(temperature=0.9, seed=11, num_predict=14)
    short = SamplingOptions(temperature=0.7, seed=2, num_predict=3, repeat_penalty=1.3)
    return [
        Request([1, 2, 3, 4, 5], [(3, 1.0)], greedy),
        Request([7, 8], [(4, 1.0)], sampled),
        Request([9, 10, 11], [(None, 1.0)], short),
        Request([12], [(3, 1.0)], sampled),
    ]


def test_requests_joining_mid_flight_get_what_they_get_alone(setup):
    trunk, bank = setup
    reqs = requests()
    alone = [generate(trunk, [r], eot_id=EOT, bank=bank)[0] for r in reqs]
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=2)
    first = sched.submit(reqs[0])
    sched.step()
    sched.step()
    later = [sched.submit(r) for r in reqs[1:]]  # join while the first is decoding
    sched.run_until_idle()
    tickets = [first, *later]
    for ticket, expected in zip(tickets, alone, strict=True):
        assert ticket.done
        assert ticket.tokens == expected
        assert ticket.done_reason in ("stop", "length")
    assert not sched.active
    assert not sched.pending


def test_the_background_thread_streams_each_ticket(setup):
    trunk, bank = setup
    reqs = requests()
    alone = [generate(trunk, [r], eot_id=EOT, bank=bank)[0] for r in reqs]
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=4, keep_hidden=True)
    sched.start()
    try:
        got: dict[int, list[int]] = {}

        def client(i: int) -> None:
            got[i] = list(sched.submit(reqs[i]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sched.stop()
    assert [got[i] for i in range(len(reqs))] == alone


def test_it_rejects_what_it_cannot_serve(setup):
    trunk, _ = setup
    sched = Scheduler(trunk)
    with pytest.raises(ValueError, match="kernels"):
        sched.submit(Request([1], [(3, 0.5), (4, 0.5)]))
    with pytest.raises(ValueError, match="bank"):
        sched.submit(Request([1], [(3, 1.0)]))
    with pytest.raises(ValueError, match="prompt"):
        sched.submit(Request([500]))


def test_a_cancelled_request_frees_its_row_at_the_next_step(setup):
    trunk, bank = setup
    reqs = requests()
    alone = generate(trunk, [reqs[1]], eot_id=EOT, bank=bank)[0]
    long = Request([1, 2, 3], [(3, 1.0)], SamplingOptions(temperature=0, num_predict=40))
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=1)
    first = sched.submit(long)
    queued_then_cancelled = sched.submit(reqs[0])
    waiting = sched.submit(reqs[1])
    sched.step()
    sched.step()
    first.cancel()
    queued_then_cancelled.cancel()
    sched.step()  # drops the cancelled row and the cancelled queued request, admits the next
    assert (
        first.done and first.done_reason == "cancelled" and len(first.tokens) == 3
    )  # prefill + 2 decode steps
    assert queued_then_cancelled.done_reason == "cancelled" and not queued_then_cancelled.tokens
    assert [row.ticket for row in sched.active] == [waiting]
    sched.run_until_idle()
    assert waiting.tokens == alone
    assert list(first) == first.tokens  # the stream ends after what was produced


def greedy_requests(n: int = 9) -> list[Request]:
    plain = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=n)
    penalised = SamplingOptions(temperature=0, repeat_penalty=1.3, num_predict=n)
    return [
        Request([1, 2, 3, 4, 5], [(3, 1.0)], plain),
        Request([7, 8], [(4, 1.0)], plain),
        Request([9, 10, 11], [(None, 1.0)], plain),
        Request([12, 13], [(3, 1.0)], penalised),  # the per-row sampling path in the same batch
    ]


def test_greedy_tokens_are_the_direct_loops_alone_and_batched(setup, monkeypatch):
    """Batch 1 (the fast path over the row's own cache) and a full batch both give exactly the
    tokens of the direct decode loop `Constellation.reply` runs (`generation.decode`)."""
    trunk, bank = setup
    batched_steps = []
    original = Trunk._slot_forward

    def counting(self, *args, **kwargs):
        batched_steps.append(len(args[2].rows))  # (idx, route, caches)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trunk, "_slot_forward", counting)
    reqs = greedy_requests()
    direct = [generate(trunk, [r], bank=bank)[0] for r in reqs]
    assert all(len(tokens) == 9 for tokens in direct)

    one = Scheduler(trunk, bank, max_batch=1)
    alone = [one.submit(r) for r in reqs]
    one.run_until_idle()
    assert [t.tokens for t in alone] == direct
    assert batched_steps == []  # one row at a time: never the batched slot forward

    full = Scheduler(trunk, bank, max_batch=4)
    batched = [full.submit(r) for r in reqs]
    full.run_until_idle()
    assert [t.tokens for t in batched] == direct
    assert batched_steps and max(batched_steps) == 4


def test_the_lora_route_is_gathered_once_per_batch_composition(setup, monkeypatch):
    trunk, bank = setup
    built: list[list[int]] = []
    original = LoRARoute.for_rows  # bound to the class

    def counting(bank, slots):
        built.append(list(slots))
        return original(bank, slots)

    monkeypatch.setattr(LoRARoute, "for_rows", counting)
    sched = Scheduler(trunk, bank, max_batch=2)
    reqs = greedy_requests(n=12)[:2]
    tickets = [sched.submit(r) for r in reqs]
    sched.run_until_idle()
    assert all(len(t.tokens) == 12 for t in tickets)
    # admitted together: one route for the pair's prefill, which its 11 decode steps share
    assert built == [bank.slots_for([3, 4])]


def mixed_lengths() -> list[Request]:
    """Five prompts of different lengths on different kernels: greedy, sampled, with a repeat
    penalty and with log-probabilities."""
    greedy = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=10)
    return [
        Request([12], [(3, 1.0)], greedy),
        Request(list(range(20, 40)), [(4, 1.0)], greedy),
        Request([7, 8, 9], [(None, 1.0)], SamplingOptions(temperature=0.8, seed=5, num_predict=8)),
        Request(list(range(1, 13)), [(3, 1.0)], SamplingOptions(temperature=0, num_predict=10)),
        Request([40, 41, 42, 43, 44, 45, 46], [(4, 1.0)], SamplingOptions(seed=9, logprobs=2)),
    ]


@pytest.mark.parametrize("prefill_tokens", [2048, 20])
def test_requests_admitted_in_one_step_prefill_together_and_get_what_they_get_alone(
    setup, monkeypatch, prefill_tokens
):
    """Right-padded in one forward (or, under a small cap, in groups of similar length): every
    request's tokens are the ones it gets alone, and its hidden states are those of its own
    positions; the hidden states and log-probabilities equal its alone ones up to the rounding of
    a GEMM with another row count (a CPU GEMM rounds a row by the batch, as in the decode steps)."""
    trunk, bank = setup
    reqs = mixed_lengths()
    solo = []
    for r in reqs:
        one = Scheduler(trunk, bank, eot_id=EOT, max_batch=1, keep_hidden=True)
        solo.append(one.submit(r))
        one.run_until_idle()
    prefills: list[tuple[int, int]] = []
    original = Trunk.forward

    def counting(self, idx, *args, **kwargs):
        cache = kwargs.get("cache")
        if isinstance(cache, KVCache) and cache.pos == 0:  # a prefill, not a decode step
            prefills.append(tuple(idx.shape))
        return original(self, idx, *args, **kwargs)

    monkeypatch.setattr(Trunk, "forward", counting)
    sched = Scheduler(
        trunk, bank, eot_id=EOT, max_batch=8, keep_hidden=True, prefill_tokens=prefill_tokens
    )
    tickets = [sched.submit(r) for r in reqs]
    sched.step()  # all five admitted in this step
    assert all(t.tokens for t in tickets) and not sched.pending
    if prefill_tokens == 2048:
        assert prefills == [(5, 20)]  # one forward, padded to the longest prompt
    else:
        assert prefills == [(1, 20), (1, 12), (2, 7), (1, 1)]  # ≤ 20 padded positions each
    sched.run_until_idle()
    for ticket, alone, r in zip(tickets, solo, reqs, strict=True):
        assert ticket.tokens == alone.tokens
        assert ticket.done_reason == alone.done_reason
        assert len(ticket.logprobs) == len(alone.logprobs)
        for (lp, top), (solo_lp, solo_top) in zip(ticket.logprobs, alone.logprobs, strict=True):
            assert lp == pytest.approx(solo_lp, abs=1e-5)
            assert [t for t, _ in top] == [t for t, _ in solo_top]
            assert [v for _, v in top] == pytest.approx([v for _, v in solo_top], abs=1e-5)
        assert ticket.hidden[0].shape == (len(r.prompt), CFG.hidden)  # no padding positions
        assert len(ticket.hidden) == len(alone.hidden)
        for batched, solo_hidden in zip(ticket.hidden, alone.hidden, strict=True):
            torch.testing.assert_close(batched, solo_hidden, rtol=1e-5, atol=1e-5)
    assert tickets[4].logprobs and len(tickets[4].logprobs[0][1]) == 2
    greedy = [0, 1, 3]
    direct = [generate(trunk, [reqs[i]], eot_id=EOT, bank=bank)[0] for i in greedy]
    assert [tickets[i].tokens for i in greedy] == direct


def test_a_request_that_fails_in_a_batched_admission_fails_alone(setup):
    trunk, bank = setup
    reqs = mixed_lengths()
    alone = [generate(trunk, [r], eot_id=EOT, bank=bank)[0] for r in reqs[:2]]
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=4)
    first = sched.submit(reqs[0])
    broken = sched.submit(Request([1, 2], [(3, 1.0)], SamplingOptions(seed=2**70)))
    second = sched.submit(reqs[1])
    sched.run_until_idle()
    assert broken.done_reason == "error" and not broken.tokens
    assert [first.tokens, second.tokens] == alone


def test_a_failed_prefill_ends_its_group_and_the_next_is_served(setup, monkeypatch):
    trunk, bank = setup
    reqs = mixed_lengths()
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=4)
    running = sched.submit(reqs[3])
    sched.step()
    original = Trunk.forward

    def broken(self, idx, *args, **kwargs):
        if idx.shape[1] > 1:
            raise RuntimeError("injected")
        return original(self, idx, *args, **kwargs)

    monkeypatch.setattr(Trunk, "forward", broken)
    doomed = [sched.submit(r) for r in reqs[:2]]
    sched.step()
    assert [t.done_reason for t in doomed] == ["error", "error"] and "injected" in doomed[0].error
    assert [row.ticket for row in sched.active] == [running]  # the running row goes on
    monkeypatch.undo()
    later = sched.submit(reqs[0])
    sched.run_until_idle()
    assert running.tokens == generate(trunk, [reqs[3]], eot_id=EOT, bank=bank)[0]
    assert later.tokens == generate(trunk, [reqs[0]], eot_id=EOT, bank=bank)[0]


def test_a_listener_gets_every_token_then_the_end(setup):
    trunk, bank = setup
    reqs = greedy_requests()
    sched = Scheduler(trunk, bank, max_batch=2)
    early, late = sched.submit(reqs[0]), sched.submit(reqs[1])
    sched.step()
    sched.step()  # both have tokens already when their listeners attach
    heard: dict[str, list[int | None]] = {"early": [], "late": []}
    early.listen(heard["early"].append)
    sched.run_until_idle()
    late.listen(heard["late"].append)  # after it finished: everything, then the end
    assert heard["early"] == [*early.tokens, None]
    assert heard["late"] == [*late.tokens, None]
    with pytest.raises(AssertionError, match="one listener"):
        early.listen(print)


def test_ignore_eos_rows_run_to_num_predict_like_the_direct_loop(setup):
    trunk, bank = setup
    opts = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=16)
    first = generate(trunk, [Request([1, 2, 3], [(3, 1.0)], opts)], bank=bank)[0]
    eot = first[0]  # pretend the first token it draws is end of text
    keep_going = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=16, ignore_eos=True)
    req = Request([1, 2, 3], [(3, 1.0)], keep_going)
    alone = generate(trunk, [req], eot_id=eot, bank=bank)[0]
    sched = Scheduler(trunk, bank, eot_id=eot, max_batch=2)
    sched.start()
    try:
        got = list(sched.submit(req))
    finally:
        sched.stop()
    assert got == alone
    assert len(got) == 16
    assert eot not in got


def test_the_scheduler_thread_decodes_on_the_threads_it_was_given(setup):
    """The intra-op thread count is set in the scheduler's own thread (a listener runs there);
    the thread that built the scheduler keeps its own."""
    trunk, bank = setup
    mine = torch.get_num_threads()
    seen: list[int] = []
    sched = Scheduler(trunk, bank, max_batch=2, threads=1)
    sched.start()
    try:
        ticket = sched.submit(greedy_requests()[0])
        ticket.listen(lambda token: seen.append(torch.get_num_threads()))
        ticket.wait()
    finally:
        sched.stop()
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == mine


def test_auto_threads_leave_cores_to_the_event_loop(monkeypatch):
    from constellation.engine import scheduler

    for cores, expected in [(1, 1), (2, 1), (4, 1), (8, 3), (16, 7)]:
        monkeypatch.setattr(scheduler.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert scheduler.auto_threads() == expected


def test_a_request_that_fails_on_admission_fails_alone_and_the_next_is_served(setup):
    trunk, bank = setup
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=2)
    sched.start()
    try:
        # past what the options parser lets through: the generator cannot take this seed
        broken = sched.submit(Request([1, 2], [(3, 1.0)], SamplingOptions(seed=2**70)))
        assert broken.wait(10) and broken.done_reason == "error"
        assert "seed" in broken.error.lower() or "overflow" in broken.error.lower()
        good = Request([1, 2, 3], [(3, 1.0)], SamplingOptions(temperature=0, num_predict=5))
        ticket = sched.submit(good)
        assert ticket.wait(10) and ticket.done_reason in ("stop", "length")
        assert ticket.tokens == generate(trunk, [good], eot_id=EOT, bank=bank)[0]
    finally:
        sched.stop()


def test_a_failed_decode_step_ends_its_rows_not_the_thread(setup, monkeypatch):
    trunk, bank = setup
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=2)
    opts = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=20)
    first = sched.submit(Request([1, 2], [(3, 1.0)], opts))
    second = sched.submit(Request([4, 5], [(4, 1.0)], opts))
    sched.step()  # both admitted and one step decoded

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(sched, "_decode_step", broken)
    sched.step()
    assert (first.done_reason, second.done_reason) == ("error", "error")
    assert "injected" in first.error and sched.active == []
    monkeypatch.undo()

    again = Request([1, 2, 3], [(3, 1.0)], SamplingOptions(temperature=0, num_predict=5))
    ticket = sched.submit(again)
    sched.run_until_idle()
    assert ticket.tokens == generate(trunk, [again], eot_id=EOT, bank=bank)[0]


def test_a_sampling_failure_ends_that_row_only(setup, monkeypatch):
    trunk, bank = setup
    sched = Scheduler(trunk, bank, eot_id=EOT, max_batch=2)
    plain = SamplingOptions(temperature=0, repeat_penalty=1.0, num_predict=6)
    doomed = SamplingOptions(temperature=0.9, seed=3, num_predict=6)
    import constellation.engine.scheduler as module

    real = module.sample_next

    def picky(logits, history, opts, gen, eot_id=None):
        if opts is doomed:
            raise RuntimeError("injected sampling failure")
        return real(logits, history, opts, gen, eot_id)

    monkeypatch.setattr(module, "sample_next", picky)
    ok_request = Request([1, 2, 3], [(3, 1.0)], plain)
    ok = sched.submit(ok_request)
    bad = sched.submit(Request([4, 5], [(4, 1.0)], doomed))
    sched.run_until_idle()
    assert bad.done_reason == "error" and "injected" in bad.error
    assert ok.done_reason in ("stop", "length")
    assert ok.tokens == generate(trunk, [ok_request], eot_id=EOT, bank=bank)[0]
