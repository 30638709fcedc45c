"""Continuous batching: a request's tokens are the same alone or in any batch (joins, cancellations,
prompt lengths across chunk boundaries), and the per-request features of the Engine survive."""

import threading

import pytest
import torch

from lightcoder.infer.batch_forward import Segment, forward_segments
from lightcoder.infer.engine import Engine, SamplingParams
from lightcoder.infer.fused_decode import FusedDecoder
from lightcoder.infer.scheduler import BatchScheduler
from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer


@pytest.fixture(scope="module")
def model():
    m = Transformer(get_preset("lc-tiny", init_std=0.2))
    m.init_weights(0)
    return m.eval()


def prompts(n_tokens, seed=0, vocab=60):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in n_tokens]


def drain(stream):
    ids = []
    try:
        while True:
            ids.append(next(stream))
    except StopIteration as done:
        return ids, done.value


def alone(model, prompt, params, **kw):
    sched = BatchScheduler(model, n_slots=1, chunk_tokens=32, step_tokens=64).start()
    try:
        return drain(sched.submit(prompt, params, **kw))
    finally:
        sched.shutdown()


@pytest.mark.parametrize("threads", [1, 2])
def test_a_decode_row_is_the_same_bits_beside_any_number_of_rows(model, threads):
    """Batched row counts that a BLAS splits its own way (MKL: 2, 3, 5-7, 9-11 rows at 2 threads on an
    AVX-512 EPYC) are padded to a row-invariant count, so one request's logits never depend on the rest."""
    dec = FusedDecoder(model)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = prompts((9,))[0]
        kv = model.init_kv_cache(1, 128)
        forward_segments(dec, [Segment(kv, 0, a, len(a))])  # a's keys/values, no logits
        solo = forward_segments(dec, [Segment(kv, len(a), [7], 0)])[0]
        for n_other in range(1, 14):
            other = prompts((n_other,), seed=n_other)[0]
            both = forward_segments(dec, [Segment(model.init_kv_cache(1, 128), 0, other, 0),
                                          Segment(kv, len(a), [7], 0)])
            assert torch.equal(solo, both[1]), n_other
    finally:
        torch.set_num_threads(before)


def test_segments_alone_equal_segments_batched(model):
    dec = FusedDecoder(model)
    a, b = prompts((37, 5))
    kv1, kv2, kv3 = (model.init_kv_cache(1, 128) for _ in range(3))
    solo = forward_segments(dec, [Segment(kv1, 0, a, len(a) - 1)])[0]
    both = forward_segments(dec, [Segment(kv2, 0, b, 0), Segment(kv3, 0, a, len(a) - 1)])
    assert torch.equal(solo, both[1]) and both[0].shape == (5, model.cfg.vocab_size)
    with torch.inference_mode():
        ref = model(torch.tensor([a]))[0, -1]
    assert torch.allclose(solo[0], ref, atol=1e-4)  # the same model as Transformer.forward
    step = forward_segments(dec, [Segment(kv1, len(a), [7], 0)])[0]  # one row: padded, same as batched
    step_b = forward_segments(dec, [Segment(kv3, len(a), [7], 0), Segment(kv2, len(b), [1, 2], 0)])[0]
    assert torch.equal(step, step_b)


def test_greedy_tokens_are_the_same_alone_and_batched(model):
    params = SamplingParams(max_new_tokens=24)
    ps = prompts((3, 31, 32, 33, 100, 150, 7))  # around the 32-id chunk and the 64-id step budget
    solo = [alone(model, p, params) for p in ps]
    engine = Engine(model)
    assert [ids for ids, _ in solo] == [list(engine.generate(p, params)) for p in ps]  # as the single engine
    sched = BatchScheduler(model, n_slots=3, chunk_tokens=32, step_tokens=64).start()
    try:
        batched = [drain(s) for s in [sched.submit(p, params) for p in ps]]  # 7 requests, 3 slots: joins
        assert batched == solo
        assert sched.busy_slot_steps > sched.steps  # requests really shared steps
    finally:
        sched.shutdown()


def test_joins_mid_decode_and_cancellations_leave_the_others_unchanged(model):
    params = SamplingParams(max_new_tokens=40)
    long_a, long_b, late, doomed = prompts((20, 90, 45, 60), seed=1)
    solo = {i: alone(model, p, params) for i, p in enumerate((long_a, long_b, late))}
    sched = BatchScheduler(model, n_slots=4, chunk_tokens=32, step_tokens=64).start()
    try:
        a, b = sched.submit(long_a, params), sched.submit(long_b, params)
        first_a = [next(a) for _ in range(5)]  # a is decoding when the others join
        cancel = threading.Event()
        d = sched.submit(doomed, params, cancel.is_set)
        c = sched.submit(late, params)
        next(d)
        cancel.set()  # cancelled mid-batch by its client
        ids_d, reason_d = drain(d)
        ids_a, reason_a = drain(a)
        assert (first_a + ids_a, reason_a) == solo[0]
        assert drain(b) == solo[1] and drain(c) == solo[2]
        assert reason_d == "cancelled" and len(ids_d) < 39
        closed = sched.submit(prompts((80,), seed=9)[0], params)  # a consumer that stops reading closes it
        next(closed)
        closed.close()
        assert drain(closed)[1] == "cancelled" and sched.busy == 0
    finally:
        sched.shutdown()


def test_sampled_tokens_follow_the_seed_alone_or_batched(model):
    params = SamplingParams(max_new_tokens=16, temperature=0.9, top_k=20, top_p=0.9, seed=3)
    p, other = prompts((25, 40), seed=2)
    solo = alone(model, p, params)
    sched = BatchScheduler(model, n_slots=2).start()
    try:
        streams = [sched.submit(other, SamplingParams(max_new_tokens=16, temperature=1.0, seed=9)),
                   sched.submit(p, params)]
        assert drain(streams[1]) == solo and drain(streams[0])[1] == "length"
    finally:
        sched.shutdown()


def test_prefix_reuse_replay_fill_only_and_pinned_slots(model):
    sched = BatchScheduler(model, n_slots=2, chunk_tokens=32).start()
    try:
        (p,) = prompts((70,), seed=4)
        fill = sched.submit(p, SamplingParams(max_new_tokens=0), id_slot=1)  # n_predict 0: warm the cache
        assert drain(fill) == ([], "length") and fill.stats.slot == 1 and fill.stats.reused_tokens == 0
        first = sched.submit(p, SamplingParams(max_new_tokens=12))
        ids, _ = drain(first)
        assert first.stats.reused_tokens == len(p) - 1  # the warm-up's keys/values were reused
        typed = sched.submit(p + ids[:4], SamplingParams(max_new_tokens=6))  # the user typed the ghost text
        assert drain(typed)[0] == ids[4:10] and typed.stats.replayed_tokens == 6
        cold = sched.submit(p, SamplingParams(max_new_tokens=12), cache_prompt=False)
        assert drain(cold)[0] == ids and cold.stats.reused_tokens == 0
        with pytest.raises(ValueError, match="id_slot=5"):
            sched.submit(p, SamplingParams(max_new_tokens=1), id_slot=5)
    finally:
        sched.shutdown()


def test_stop_ids_max_time_and_prompt_time_limit(model):
    params = SamplingParams(max_new_tokens=30)
    (p,) = prompts((50,), seed=5)
    ids, _ = alone(model, p, params)
    stop_at = ids[6]
    cut, reason = alone(model, p, SamplingParams(max_new_tokens=30, stop_ids={stop_at}))
    assert reason == "stop" and cut == ids[:ids.index(stop_at)]
    assert alone(model, p, SamplingParams(max_new_tokens=30, max_seconds=1e-9))[1] == "time"
    (long,) = prompts((200,), seed=6)
    sched = BatchScheduler(model, n_slots=2, chunk_tokens=32, step_tokens=32).start()
    try:
        other = sched.submit(p, SamplingParams(max_new_tokens=60))
        next(other)  # while it decodes, prompts go in at most 32 ids per step
        s = sched.submit(long, params, max_prompt_seconds=1e-9)  # t_max_prompt_ms: stops after one chunk
        assert drain(s) == ([], "time")
        assert 0 < max(len(e.tokens) for e in sched.cache.entries if e.tokens[:5] == long[:5]) < len(long)
        assert drain(other)[1] == "length"
    finally:
        sched.shutdown()
