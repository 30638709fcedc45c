"""Engine with prefix-KV reuse: identical tokens to cache-free generation over random request streams."""

import random

import pytest
import torch

from lightcoder.infer.engine import Engine, SamplingParams, generate
from lightcoder.infer.prefix_cache import common_prefix_len
from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer


def tiny_model(**overrides):
    model = Transformer(get_preset("lc-tiny", init_std=0.2, **overrides))
    model.init_weights(0)
    return model.eval()


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 5]) == 2
    a = list(range(1000))
    assert common_prefix_len(a, a[:700] + [-1]) == 700 and common_prefix_len(a, []) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_reuse_and_replay_give_the_same_tokens_as_no_cache(seed):
    """Editor-like traffic: growing prefixes, edits, typing into the ghost text, other files."""
    model = tiny_model()
    engine = Engine(model, cache_entries=2)
    rng = random.Random(seed)
    files = [[rng.randrange(11, 512) for _ in range(80)] for _ in range(3)]
    for _ in range(40):
        base = rng.choice(files)
        kind = rng.random()
        if kind < 0.3:  # type what the previous ghost text showed
            k = rng.randrange(5, 60)
            ghost = list(engine.generate(base[:k], SamplingParams(max_new_tokens=12)))
            prompt = base[:k] + ghost[:rng.randrange(0, len(ghost) + 1)]
        elif kind < 0.6:  # an edit in the middle
            k = rng.randrange(10, 80)
            prompt = base[:k]
            prompt[rng.randrange(k)] = rng.randrange(11, 512)
        else:
            prompt = base[:rng.randrange(1, 80)]
        n = rng.randrange(1, 16)
        stop = {rng.randrange(11, 512) for _ in range(20)}
        ours = list(engine.generate(prompt, SamplingParams(max_new_tokens=n, stop_ids=stop)))
        assert ours == list(generate(model, prompt, max_new_tokens=n, stop_ids=stop))
    stats = engine.cache.stats()
    assert stats["entries"] <= 2 and stats["hit_rate"] > 0.5


def test_replay_skips_the_model_and_sampling_reuses_the_prompt():
    model = tiny_model()
    engine = Engine(model)
    prompt = list(range(20, 60))
    first = list(engine.generate(prompt, SamplingParams(max_new_tokens=10)))
    again = list(engine.generate(prompt + first[:4], SamplingParams(max_new_tokens=6)))
    assert again == first[4:10] and engine.last_stats.replayed_tokens == 6
    sampled = [list(engine.generate(prompt, SamplingParams(max_new_tokens=8, temperature=1.0, seed=3)))
               for _ in range(2)]
    assert sampled[0] == sampled[1] and engine.last_stats.reused_tokens == len(prompt) - 1


def test_max_seconds_cancel_and_context_end():
    model = tiny_model(max_seq_len=64)
    engine = Engine(model)
    gen = engine.generate([1, 2, 3], SamplingParams(max_new_tokens=50, max_seconds=1e-9))
    out = []
    with pytest.raises(StopIteration) as done:
        while True:
            out.append(next(gen))
    assert done.value.value == "time" and len(out) == 1
    gen = engine.generate([1, 2, 4], SamplingParams(max_new_tokens=50), cancelled=lambda: True)
    assert len(list(gen)) == 1
    out = list(engine.generate(list(range(1, 60)), SamplingParams(max_new_tokens=50)))
    assert out == list(generate(model, list(range(1, 60)), max_new_tokens=50, stop_ids=()))
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=-1)


def test_fused_decode_step_matches_the_model():
    from lightcoder.infer.fused_decode import FusedDecoder

    model = tiny_model()
    step = FusedDecoder(model)
    ids = list(range(20, 50))
    caches = [model.init_kv_cache(1, 64) for _ in range(2)]
    with torch.inference_mode():
        for cache in caches:
            model(torch.tensor([ids]), kv_cache=cache, start_pos=0)
        for pos, token in enumerate([7, 300, 41], start=len(ids)):
            ours = step(token, pos, caches[0])
            ref = model(torch.tensor([[token]]), kv_cache=caches[1], start_pos=pos)[0, -1]
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(caches[0][1].k[:, :, :pos + 1], caches[1][1].k[:, :, :pos + 1])
        # Several tokens at once, at the start and after cached positions.
        for start, chunk in ((0, ids[:9]), (9, ids[9:])):
            ours = step.prefill(chunk, start, caches[0])
            ref = model(torch.tensor([chunk]), kv_cache=caches[1], start_pos=start)[0, -1]
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(caches[0][0].v[:, :, :len(ids)], caches[1][0].v[:, :, :len(ids)])
    plain = Engine(model, fused_decode=False)
    fused = Engine(model)
    assert fused.decoder is not None and plain.decoder is None
    p = SamplingParams(max_new_tokens=20)
    assert list(fused.generate(ids, p)) == list(plain.generate(ids, p))


@pytest.mark.parametrize("fused", [True, False])
def test_engine_masks_padded_ids_on_every_path(fused):
    """Prefill, single steps, drafted passes and replay all leave out ids >= vocab_size, and greedy
    tokens stay those of generate(vocab_size=...)."""
    model = tiny_model()
    with torch.no_grad():  # make the padded ids the most likely ones
        model.output.weight[400:] += 5.0
    prompt = [1, 5, 6, 7, 5, 6]
    ref = list(generate(model, prompt, max_new_tokens=12, stop_ids=(), vocab_size=400))
    free = list(generate(model, prompt, max_new_tokens=12, stop_ids=()))
    assert any(t >= 400 for t in free) and all(t < 400 for t in ref)
    engine = Engine(model, vocab_size=400, fused_decode=fused)
    engine.drafter = lambda context, limit: ref[len(context) - len(prompt):][:limit]  # right guesses
    assert list(engine.generate(prompt, SamplingParams(max_new_tokens=12))) == ref
    assert list(engine.generate(prompt + ref[:3], SamplingParams(max_new_tokens=9))) == ref[3:]
    assert engine.last_stats.replayed_tokens > 0
    assert engine.accepted_tokens > 0 if fused else engine.drafted_tokens == 0
    sampled = list(engine.generate(prompt, SamplingParams(max_new_tokens=12, temperature=1.0, seed=1)))
    assert len(sampled) == 12 and all(t < 400 for t in sampled)
