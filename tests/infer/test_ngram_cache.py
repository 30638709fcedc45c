"""The n-gram cache (infer/ngram_cache.py): its counts against a brute-force count over real code, the
mixing arithmetic, greedy stop decisions left to the model, and the same tokens from every decoder."""

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from lightcoder.infer.engine import Engine, SamplingParams, generate
from lightcoder.infer.ngram_cache import CacheMix, NgramCache
from lightcoder.infer.penalties import Penalty, check_cache_weight
from lightcoder.infer.scheduler import BatchScheduler


def brute_followers(stream, context, min_order, max_order):
    """The longest suffix of context (min_order..max_order ids) found in stream, and what followed it."""
    for m in range(min(max_order, len(context)), min_order - 1, -1):
        tail = list(context[-m:])
        found = Counter(stream[i + m] for i in range(len(stream) - m) if stream[i:i + m] == tail and stream[i + m] >= 0)
        if found:
            return m, dict(found)
    return 0, {}


def test_followers_equal_a_brute_force_count_over_real_code():
    """Byte ids of stdlib modules: every queried context's longest match and its followers."""
    import json

    files = [Path(json.__file__).read_text(), Path(random.__file__).read_text()[:20000]]
    cache = NgramCache.from_texts(files, lambda text: list(text.encode()), max_order=5)
    stream = [b for text in files for b in [*text.encode(), -1]]
    rng = random.Random(0)
    checked = 0
    for _ in range(60):
        start = rng.randrange(0, len(stream) - 8)
        context = [b for b in stream[start:start + rng.randrange(1, 8)] if b >= 0]
        if rng.random() < 0.3:
            context.append(rng.randrange(256))  # an id sequence the files may not hold
        for min_order in (1, 3):
            assert cache.followers(context, min_order=min_order) == brute_followers(stream, context, min_order, 5)
            checked += 1
    assert checked == 120 and len(cache) == len(stream) - 2 * len(files)  # no file's first or last id


def test_matches_never_cross_a_file_boundary():
    cache = NgramCache.from_texts(["ab", "cd"], lambda text: [ord(c) for c in text], max_order=3)
    assert cache.followers([ord("b")], min_order=1) == (0, {})  # "b" ends the first file
    assert cache.followers([ord("c")], min_order=1) == (1, {ord("d"): 1})


def test_the_mix_moves_mass_to_the_followers_and_keeps_the_stop_odds():
    stop = 0
    logits = torch.tensor([1.0, 2.0, 0.5, 0.0, -1.0])
    mix = CacheMix(source=NgramCache([7, 8, 9, 3, 7, 8, 9, 3]), weight=0.9, prompt_tail=(7, 8), min_order=3)
    assert torch.equal(mix.apply(logits, [], {stop}), logits)  # 2 ids of context: below min_order
    out = mix.apply(logits, [9], {stop})  # "7 8 9" was followed by 3 twice
    p, q = torch.softmax(logits, -1), torch.softmax(out, -1)
    share = 0.9 * 2 / (2 + 1)  # weight * C / (C + T)
    mixed3 = (1 - share) * p[3] + share * (1 - p[stop])
    assert torch.isclose(out[3] - out[1], torch.log(mixed3 / ((1 - share) * p[1])), atol=1e-5)
    assert q[3] > p[3] and q[1] < p[1] and int(out.argmax()) == 3
    best = max(float(p[i]) for i in range(1, 5))
    assert torch.isclose(out[stop] - out.max(), torch.log(p[stop] / best), atol=1e-5)  # odds against the best kept


def test_greedy_stops_where_the_model_alone_would():
    """Whatever the cache prefers, the stop id wins exactly when it beats every other id of the model."""
    rng = torch.Generator().manual_seed(0)
    mix = CacheMix(source=NgramCache([5, 6, 7, 1, 5, 6, 7, 2]), weight=0.9, prompt_tail=(5, 6, 7), min_order=3)
    stops = changed = 0
    for _ in range(200):
        logits = torch.randn(12, generator=rng) * 3
        mixed = mix.apply(logits, [], {0})
        assert (int(mixed.argmax()) == 0) == (int(logits.argmax()) == 0)
        stops += int(logits.argmax()) == 0
        changed += int(mixed.argmax()) != int(logits.argmax())
    assert 0 < stops < 200 and changed > 0  # both outcomes came up, and the cache did change choices


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.5"])
def test_weights_outside_0_1_are_refused(bad):
    with pytest.raises(ValueError, match="cache_weight must be a number in"):
        check_cache_weight(bad)


def repetitive_prompts(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        phrase = [rng.randrange(11, 200) for _ in range(rng.randrange(4, 8))]
        out.append([rng.randrange(11, 200) for _ in range(rng.randrange(1, 5))] + phrase * rng.randrange(2, 4)
                   + phrase[:3])
    return out


def test_every_decoding_path_gives_the_same_tokens_with_a_cache(model, drain):
    """Reference decoder, Engine (drafts, warm prefix cache) and batch scheduler; the cache changes the output."""
    prompts = repetitive_prompts(4, seed=7)
    mixes = [CacheMix.for_prompt(p, 0.6) for p in prompts]
    refs = [list(generate(model, p, max_new_tokens=14, stop_ids=(), frequency_penalty=0.5, cache=m))
            for p, m in zip(prompts, mixes)]
    plain = [list(generate(model, p, max_new_tokens=14, stop_ids=(), frequency_penalty=0.5)) for p in prompts]
    assert refs != plain
    engine = Engine(model, max_draft_tokens=4)
    params = [SamplingParams(max_new_tokens=14, stop_ids=(), frequency_penalty=0.5, cache=m) for m in mixes]
    assert [list(engine.generate(p, q)) for p, q in zip(prompts, params)] == refs
    assert [list(engine.generate(p, q)) for p, q in zip(prompts, params)] == refs  # warm cache, no replay
    assert engine.drafted_tokens > 0
    sched = BatchScheduler(model, n_slots=3, chunk_tokens=32, step_tokens=64).start()
    try:
        assert [drain(sched.submit(p, q)) for p, q in zip(prompts, params)] == refs
    finally:
        sched.shutdown()


def test_a_cache_alone_makes_a_penalty_and_a_zero_weight_does_not():
    mix = CacheMix(source=NgramCache([1, 2, 3]), weight=0.5, prompt_tail=())
    assert Penalty.of(0.0, 0.0, cache=mix) is not None
    assert Penalty.of(0.0, 0.0, cache=CacheMix(source=mix.source, weight=0.0, prompt_tail=())) is None


def test_masked_ids_stay_impossible():
    """Ids the vocabulary mask or a stop guard set to -inf get no mass from the mix."""
    logits = torch.tensor([0.5, 1.0, float("-inf"), 0.2, float("-inf")])
    mix = CacheMix(source=NgramCache([7, 8, 9, 3, 7, 8, 9, 3]), weight=0.9, prompt_tail=(7, 8, 9))
    out = mix.apply(logits, [], {0})
    assert torch.isinf(out[[2, 4]]).all() and int(out.argmax()) == 3 and torch.isfinite(out[[0, 1, 3]]).all()


def test_a_masked_id_that_the_cache_predicts_stays_impossible():
    """After "7 8 9" the source has 2 (three times) and 3 (once); 2 is masked, so only 3 gains."""
    logits = torch.tensor([0.5, 1.0, float("-inf"), 0.2, 0.1])
    mix = CacheMix(source=NgramCache([7, 8, 9, 2, 7, 8, 9, 2, 7, 8, 9, 2, 7, 8, 9, 3]), weight=0.9,
                   prompt_tail=(7, 8, 9))
    out = mix.apply(logits, [], {0})
    assert torch.isinf(out[2]) and int(out.argmax()) == 3


@pytest.mark.parametrize("min_order", [0, 7])
def test_a_shortest_context_outside_the_source_is_refused(min_order):
    with pytest.raises(ValueError, match="min_order must be in 1..6"):
        CacheMix(source=NgramCache([1, 2, 3], max_order=6), weight=0.3, prompt_tail=(), min_order=min_order)


def test_a_tail_given_is_the_first_context():
    """A PSM prompt ends with the middle token: the first context is the text before the cursor instead."""
    source = NgramCache([4, 5, 6, 9, 4, 5, 6, 9])
    psm_prompt = [4, 5, 6, 100]  # ... the prefix's last ids, then a sentinel the source never holds
    logits = torch.zeros(101)
    assert torch.equal(CacheMix.for_prompt(psm_prompt, 0.5, source).apply(logits, [], set()), logits)
    with_tail = CacheMix.for_prompt(psm_prompt, 0.5, source, tail=[4, 5, 6])
    assert int(with_tail.apply(logits, [], set()).argmax()) == 9
