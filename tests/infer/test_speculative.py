"""Speculative greedy decoding with prompt-lookup drafts: same tokens as plain decoding, whatever the drafts."""

import random

import pytest
import torch

from lightcoder.infer.draft import accept_draft, prompt_lookup_draft
from lightcoder.infer.engine import Engine, SamplingParams, generate
from lightcoder.infer.prefix_cache import CacheEntry
from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer


def tiny_model():
    model = Transformer(get_preset("lc-tiny", init_std=0.2))
    model.init_weights(0)
    return model.eval()


def test_draft_continues_the_longest_latest_match():
    assert prompt_lookup_draft([4, 5, 6, 7, 8, 9, 4, 5, 6], 3) == [7, 8, 9]
    assert prompt_lookup_draft([4, 5, 6, 7, 8, 9, 4, 5, 6], 2) == [7, 8]
    # "1 2 3" occurs twice; the occurrence preceded by 9 (as the tail is) matches 4 ids and wins.
    assert prompt_lookup_draft([9, 1, 2, 3, 7, 0, 1, 2, 3, 8, 9, 1, 2, 3], 2) == [7, 0]
    assert prompt_lookup_draft([1, 2, 3, 1, 2, 3], 5) == [1, 2, 3]  # never past the context's end
    assert prompt_lookup_draft([1, 2, 3, 4], 4) == [] and prompt_lookup_draft([1, 2, 3, 1, 2, 3], 0) == []


def test_draft_is_always_what_followed_an_earlier_occurrence():
    rng = random.Random(0)
    for _ in range(300):
        ctx = [rng.randrange(4) for _ in range(rng.randrange(1, 60))]
        k = rng.randrange(1, 6)
        draft = prompt_lookup_draft(ctx, k)
        if not draft:
            # No earlier occurrence of the last 3 ids.
            assert len(ctx) <= 3 or all(ctx[i:i + 3] != ctx[-3:] for i in range(len(ctx) - 3))
            continue
        assert len(draft) <= k
        starts = [i for i in range(len(ctx) - 3) if ctx[i:i + 3] == ctx[-3:]]
        assert any(ctx[i + 3:i + 3 + len(draft)] == draft for i in starts)


@pytest.mark.parametrize("chosen, accepted", [([7, 8, 9, 1], 3), ([7, 8, 5, 1], 2), ([6, 8, 9, 1], 0)])
def test_accept_draft_keeps_the_head_greedy_agrees_with(chosen, accepted):
    entry = CacheEntry(kv=[], tokens=[1, 2])
    assert accept_draft(entry, [3, 4], [7, 8, 9], chosen) == accepted
    assert entry.tokens == [1, 2, 3, 4] + [7, 8, 9][:accepted]
    assert entry.pending == chosen[accepted]  # the greedy id after the accepted ids


@pytest.mark.parametrize("quality", ["oracle", "corrupted", "random"])
def test_speculative_greedy_gives_the_tokens_of_plain_decoding(quality):
    """Drafts that are right, right up to a wrong id, or noise: the output never changes; replay after
    a speculative run (greedy continuation in the cache) still gives the plain tokens."""
    model = tiny_model()
    rng = random.Random(1)
    for trial in range(3):
        prompt = [rng.randrange(11, 512) for _ in range(rng.randrange(5, 40))]
        n = rng.randrange(4, 20)
        ref = list(generate(model, prompt, max_new_tokens=n, stop_ids=()))

        def drafter(context, limit):
            done = len(context) - len(prompt)  # generated ids already in the context
            draft = ref[done:done + limit] if quality != "random" else [rng.randrange(11, 512) for _ in range(limit)]
            if quality == "corrupted" and draft:
                draft[rng.randrange(len(draft))] = rng.randrange(11, 512)
            return draft

        engine = Engine(model, max_draft_tokens=rng.randrange(1, 6))
        engine.drafter = drafter
        assert list(engine.generate(prompt, SamplingParams(max_new_tokens=n, stop_ids=()))) == ref
        if quality == "oracle":
            assert engine.accepted_tokens > 0 and engine.accepted_tokens == engine.drafted_tokens
        # Typing into the ghost text: replay from the cached greedy continuation, then more decoding.
        k = rng.randrange(0, n)
        more = list(engine.generate(prompt + ref[:k], SamplingParams(max_new_tokens=n + 5, stop_ids=())))
        assert more == list(generate(model, prompt + ref[:k], max_new_tokens=n + 5, stop_ids=()))
        assert engine.last_stats.replayed_tokens > 0  # the speculative run left a usable greedy continuation
        # A stop id inside accepted drafts ends the completion there (a fresh engine: no replay).
        fresh = Engine(model, max_draft_tokens=4)
        fresh.drafter = drafter
        stop = {ref[2]}
        out = list(fresh.generate(prompt, SamplingParams(max_new_tokens=n, stop_ids=stop)))
        assert out == list(generate(model, prompt, max_new_tokens=n, stop_ids=stop))


def test_verify_rows_match_one_token_steps():
    from lightcoder.infer.fused_decode import FusedDecoder

    model = tiny_model()
    step = FusedDecoder(model)
    ids = list(range(20, 50))
    caches = [model.init_kv_cache(1, 64) for _ in range(2)]
    with torch.inference_mode():
        step.prefill(ids, 0, caches[0])
        step.prefill(ids, 0, caches[1])
        rows = step.verify([7, 300, 41], len(ids), caches[0])  # (3, V)
        for i, token in enumerate([7, 300, 41]):
            torch.testing.assert_close(rows[i], step(token, len(ids) + i, caches[1]), atol=1e-5, rtol=1e-5)
