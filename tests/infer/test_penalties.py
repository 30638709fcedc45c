"""Frequency / presence penalties and stop guards: the arithmetic, and the same tokens from the reference
decoder, the Engine (drafts and prefix cache included) and the batch scheduler; plain greedy replay never
mixes with penalized runs."""

import random

import pytest
import torch

from lightcoder.infer.engine import Engine, SamplingParams, generate
from lightcoder.infer.penalties import Penalty
from lightcoder.infer.scheduler import BatchScheduler


def repetitive_prompts(n, seed=0):
    """Prompts that repeat a short phrase, so greedy decoding loops and prompt-lookup drafts fire."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        phrase = [rng.randrange(11, 200) for _ in range(rng.randrange(3, 7))]
        out.append([rng.randrange(11, 200) for _ in range(rng.randrange(1, 5))] + phrase * rng.randrange(3, 6))
    return out


def test_penalty_arithmetic_counts_generated_ids_and_ids_ahead():
    logits = torch.zeros(10)
    p = Penalty(frequency=0.5, presence=0.25)
    for token in (3, 3, 7):
        p.add(token)
    out = p.apply(logits)
    assert out[3] == -(2 * 0.5 + 0.25) and out[7] == -(0.5 + 0.25) and out[0] == 0 and logits[3] == 0
    ahead = p.apply(logits, [7, 1])
    assert ahead[7] == -(2 * 0.5 + 0.25) and ahead[1] == -(0.5 + 0.25) and ahead[3] == out[3]
    rows = p.apply_rows(torch.zeros(3, 10), [1, 1])  # row i counts draft[:i]
    assert rows[0, 1] == 0 and rows[1, 1] == -0.75 and rows[2, 1] == -1.25
    assert Penalty.of(0.0, 0.0) is None and Penalty.of(0.0, 0.1) is not None


@pytest.mark.parametrize("bad", [2.5, -3, True, "1"])
def test_penalties_outside_openais_range_are_refused(bad):
    with pytest.raises(ValueError, match="frequency_penalty must be a number in"):
        SamplingParams(frequency_penalty=bad)
    with pytest.raises(ValueError, match="presence_penalty must be a number in"):
        Penalty(frequency=0.0, presence=bad)


def test_the_reference_decoder_applies_penalties_step_by_step(model):
    """generate() with penalties = a hand-written loop: argmax of logits - f * count - p * seen."""
    prompt = repetitive_prompts(1, seed=3)[0]
    got = list(generate(model, prompt, max_new_tokens=12, stop_ids=(), frequency_penalty=0.7, presence_penalty=0.3))
    ids, out = list(prompt), []
    with torch.inference_mode():
        for _ in range(12):
            logits = model(torch.tensor([ids]))[0, -1].float()
            for token in set(out):
                logits[token] -= 0.7 * out.count(token) + 0.3
            out.append(int(logits.argmax()))
            ids.append(out[-1])
    assert got == out
    plain = [list(generate(model, p, max_new_tokens=16, stop_ids=())) for p in repetitive_prompts(6)]
    penalized = [list(generate(model, p, max_new_tokens=16, stop_ids=(), frequency_penalty=2.0))
                 for p in repetitive_prompts(6)]
    assert plain != penalized  # the penalty changes what a looping tiny model writes
    assert sum(len(set(x)) for x in penalized) > sum(len(set(x)) for x in plain)  # fewer repeated ids


def test_engine_with_drafts_and_cache_gives_the_reference_tokens(model):
    engine = Engine(model, max_draft_tokens=4)
    drafted = {True: 0, False: 0}
    for prompt in repetitive_prompts(5, seed=1):
        for f, p in ((0.0, 0.0), (0.6, 0.0), (0.0, 1.0), (0.6, 0.0)):  # the repeat: served from a warm cache
            params = SamplingParams(max_new_tokens=20, stop_ids=(), frequency_penalty=f, presence_penalty=p)
            ref = list(generate(model, prompt, max_new_tokens=20, stop_ids=(), frequency_penalty=f,
                                presence_penalty=p))
            before = engine.drafted_tokens
            assert list(engine.generate(prompt, params)) == ref
            drafted[f > 0 or p > 0] += engine.drafted_tokens - before
    assert drafted[True] > 0 and drafted[False] > 0  # penalized runs were checked against drafts too


def test_penalized_runs_never_replay_and_leave_no_continuation_to_replay(model):
    """Typing into ghost text replays a cached greedy continuation, which is only right for plain greedy."""
    prompt = repetitive_prompts(1, seed=2)[0]
    engine = Engine(model)
    plain = list(engine.generate(prompt, SamplingParams(max_new_tokens=10, stop_ids=())))
    typed = prompt + plain[:3]
    penalized = list(engine.generate(typed, SamplingParams(max_new_tokens=10, stop_ids=(), frequency_penalty=1.5)))
    assert engine.last_stats.replayed_tokens == 0
    assert penalized == list(generate(model, typed, max_new_tokens=10, stop_ids=(), frequency_penalty=1.5))
    fresh = Engine(model)
    first = list(fresh.generate(prompt, SamplingParams(max_new_tokens=10, stop_ids=(), presence_penalty=1.5)))
    again = list(fresh.generate(prompt + first[:3], SamplingParams(max_new_tokens=10, stop_ids=())))
    assert fresh.last_stats.replayed_tokens == 0
    assert again == list(generate(model, prompt + first[:3], max_new_tokens=10, stop_ids=()))


def test_batch_scheduler_gives_the_reference_tokens_alone_and_batched(model, drain):
    ps = repetitive_prompts(5, seed=4)
    settings = [(0.8, 0.0), (0.0, 0.5), (0.0, 0.0), (1.2, 0.4), (0.8, 0.0)]
    refs = [list(generate(model, p, max_new_tokens=16, stop_ids=(), frequency_penalty=f, presence_penalty=q))
            for p, (f, q) in zip(ps, settings)]
    sched = BatchScheduler(model, n_slots=3, chunk_tokens=32, step_tokens=64).start()
    try:
        streams = [sched.submit(p, SamplingParams(max_new_tokens=16, stop_ids=(), frequency_penalty=f,
                                                  presence_penalty=q)) for p, (f, q) in zip(ps, settings)]
        assert [drain(s) for s in streams] == refs
        assert sched.drafted_tokens > 0
    finally:
        sched.shutdown()


def test_a_stop_guard_masks_the_stop_ids_while_it_holds():
    p = Penalty.of(0.0, 0.0, lambda ids: len(ids) < 2, stop_ids=(2, 5))
    assert p is not None and Penalty.of(0.0, 0.0, None, stop_ids=(2,)) is None
    logits = torch.zeros(8)
    assert torch.isinf(p.apply(logits)[[2, 5]]).all() and p.apply(logits)[3] == 0 and logits[2] == 0
    p.add(4)
    assert torch.isinf(p.apply(logits)[2]) and p.apply(logits, [4])[2] == 0  # two ids: the guard lets go
    rows = p.apply_rows(torch.zeros(2, 8), [4])  # row 0 after the 1 id so far, row 1 after 2
    assert torch.isinf(rows[0, 5]) and rows[1, 5] == 0


def test_a_stop_guard_gives_the_same_tokens_on_every_decoding_path(model, drain):
    """The stop ids are what greedy would pick first; with the guard no path may end before 6 ids."""
    prompts = repetitive_prompts(4, seed=5)
    stops = [tuple(generate(model, p, max_new_tokens=3, stop_ids=())) for p in prompts]
    guard = lambda ids: len(ids) < 6  # noqa: E731
    refs = [list(generate(model, p, max_new_tokens=12, stop_ids=s, stop_guard=guard)) for p, s in zip(prompts, stops)]
    assert all(len(r) >= 6 and not set(r[:6]) & set(s) for r, s in zip(refs, stops))
    assert [list(generate(model, p, max_new_tokens=12, stop_ids=s)) for p, s in zip(prompts, stops)] == [[]] * 4
    engine = Engine(model, max_draft_tokens=4)
    params = [SamplingParams(max_new_tokens=12, stop_ids=s, stop_guard=guard) for s in stops]
    assert [list(engine.generate(p, q)) for p, q in zip(prompts, params)] == refs
    sched = BatchScheduler(model, n_slots=3, chunk_tokens=32, step_tokens=64).start()
    try:
        assert [drain(sched.submit(p, q)) for p, q in zip(prompts, params)] == refs
    finally:
        sched.shutdown()
