"""Generation: sampling as a pure function, KV-cache greedy decoding, stops, the Completer end to end."""

import inspect
import json
import textwrap

import pytest
import torch

from lightcoder.infer.completer import Completer, Completion
from lightcoder.infer.engine import MIN_SAMPLING_TEMPERATURE, SamplingParams, generate, sample_next, seeded_generator
from lightcoder.model.config import get_preset
from lightcoder.model.hf import CheckpointError, save_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.train import train_tokenizer


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    # init_std 0.2 gives peaked logits, so greedy paths are far from ties.
    model = Transformer(get_preset("lc-tiny", init_std=0.2, **overrides))
    model.init_weights(seed)
    return model.eval()


def naive_greedy(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding by re-running the full sequence each step (no cache)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


# ---- sample_next


def test_greedy_and_degenerate_sampling_are_argmax():
    logits = torch.tensor([0.1, 2.0, -1.0, 1.9])
    rng = torch.Generator().manual_seed(0)
    assert sample_next(logits) == 1
    assert all(sample_next(logits, 5.0, top_k=1, rng=rng) == 1 for _ in range(20))
    assert all(sample_next(logits, 5.0, top_p=1e-6, rng=rng) == 1 for _ in range(20))


def test_sampling_follows_the_tempered_distribution_and_is_seeded():
    logits = torch.tensor([0.0, 1.0, 2.0, -10.0])
    draws = [sample_next(logits, 1.0, rng=torch.Generator().manual_seed(0)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same draw
    rng = torch.Generator().manual_seed(1)
    counts = torch.bincount(torch.tensor([sample_next(logits, 1.0, rng=rng) for _ in range(3000)]), minlength=4)
    torch.testing.assert_close(counts / 3000, logits.softmax(-1), atol=0.03, rtol=0)
    # top_k=2 keeps {1, 2}; top_p=0.8 keeps {2, 1} (0.665 + 0.245 crosses 0.8)
    assert {sample_next(logits, 1.0, top_k=2, rng=rng) for _ in range(200)} == {1, 2}
    assert {sample_next(logits, 1.0, top_p=0.8, rng=rng) for _ in range(200)} == {1, 2}


def test_sampling_needs_an_rng_and_valid_settings():
    with pytest.raises(ValueError, match="rng"):
        sample_next(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_next(torch.zeros(3), 1.0, top_p=0.0, rng=torch.Generator())


# ---- generate


def test_greedy_generate_matches_full_forward_decoding():
    model = tiny_model()
    prompt = torch.randint(11, 512, (30,), generator=torch.Generator().manual_seed(0)).tolist()
    gen = generate(model, prompt, max_new_tokens=20, stop_ids=())
    assert list(gen) == naive_greedy(model, prompt, 20)


def test_stop_ids_end_generation_and_are_not_yielded():
    model = tiny_model()
    prompt = [1, 40, 41, 42]
    free = list(generate(model, prompt, max_new_tokens=12, stop_ids=()))
    stop = free[5]
    gen = generate(model, prompt, max_new_tokens=12, stop_ids={stop})
    out = []
    with pytest.raises(StopIteration) as done:
        while True:
            out.append(next(gen))
    assert out == free[: free.index(stop)] and done.value.value == "stop"


def test_generation_ends_at_max_new_tokens_or_the_context():
    model = tiny_model(max_seq_len=32)
    gen = generate(model, [1, 2, 3], max_new_tokens=5, stop_ids=())
    assert len(list(gen)) == 5
    out = list(generate(model, list(range(1, 25)), max_new_tokens=50, stop_ids=()))
    assert len(out) == 32 - 24 + 1  # the last token is yielded but never fed back
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        list(generate(model, list(range(32)), max_new_tokens=1, stop_ids=()))
    with pytest.raises(ValueError, match="empty"):
        list(generate(model, [], max_new_tokens=1, stop_ids=()))


def test_sampled_generation_is_reproducible():
    model = tiny_model()
    runs = [list(generate(model, [1, 50, 60], max_new_tokens=15, stop_ids=(), temperature=1.0, top_k=50,
                          top_p=0.9, rng=torch.Generator().manual_seed(7))) for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_temperature_too_small_for_fp32_decodes_greedily_and_nan_is_refused():
    logits = torch.randn(512, generator=torch.Generator().manual_seed(1))
    for temperature in (1e-45, 1e-300, MIN_SAMPLING_TEMPERATURE / 2):  # logits / t: inf, and a NaN softmax
        assert sample_next(logits, temperature, rng=seeded_generator(0)) == int(logits.argmax())
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, float("nan"), rng=seeded_generator(0))
    assert SamplingParams(temperature=1e-45).temperature == 0.0  # greedy: drafts and replay apply


def test_any_integer_seeds_a_generator_and_wraps_at_64_bits():
    for seed, same in ((2**64 + 5, 5), (-1, 2**64 - 1), (-(2**70), (-(2**70)) % 2**64)):
        assert torch.rand(4, generator=seeded_generator(seed)).tolist() == \
            torch.rand(4, generator=seeded_generator(same)).tolist()
    assert torch.rand(4, generator=seeded_generator(-1)).tolist() == \
        torch.rand(4, generator=torch.Generator().manual_seed(-1)).tolist()  # torch's own range is unchanged


def test_greedy_tokens_match_transformers_generate(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_model()
    path = save_checkpoint(model, model.cfg, tmp_path / "ck")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    prompt = torch.randint(11, 512, (40,), generator=torch.Generator().manual_seed(3)).tolist()
    theirs = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, 40, dtype=torch.long),
                         max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert list(generate(model, prompt, max_new_tokens=16, stop_ids=())) == theirs[0, 40:].tolist()


# ---- Completer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """RUN/ckpt/step_000000 with a 512-token tokenizer trained on two stdlib modules."""
    run = tmp_path_factory.mktemp("run")
    tokenizer = train_tokenizer([inspect.getsource(textwrap), inspect.getsource(json)], TokenizerConfig(vocab_size=512))
    tokenizer.save(run / "tokenizer")
    model = tiny_model()
    save_checkpoint(model, model.cfg, run / "ckpt" / "step_000000", tokenizer_dir=run / "tokenizer")
    return run


def test_completer_loads_a_run_and_completes(run_dir):
    completer = Completer.load(run_dir)
    result = completer.complete("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n", path="m.py",
                                max_new_tokens=8, stop_ids=())
    assert isinstance(result, Completion)
    assert result.new_tokens == 8 and result.stop_reason == "length" and result.seconds > 0
    assert result.text == completer.tokenizer.decode(
        list(generate(completer.model, _prompt(completer, "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"),
                      max_new_tokens=8, stop_ids=())))
    # The default stop set is the tokenizer's; stop tokens never show up in the text.
    result = completer.complete("x = ", max_new_tokens=30)
    assert result.new_tokens <= 30 and "</s>" not in result.text


def _prompt(completer, prefix, suffix):
    from lightcoder.infer.prompts import build_prompt

    cfg = completer.prompt_config("spm", 8)
    return build_prompt(completer.tokenizer, prefix=prefix, suffix=suffix, path="m.py", cfg=cfg)


def test_completer_truncates_long_prompts_to_the_context(run_dir):
    completer = Completer.load(run_dir / "ckpt" / "step_000000")
    long_code = inspect.getsource(textwrap)
    result = completer.complete(long_code, long_code, path="t.py", max_new_tokens=16, stop_ids=())
    assert result.prompt_tokens <= completer.model_cfg.max_seq_len - 16
    result = completer.complete(long_code, max_new_tokens=4, max_prompt_tokens=50, stop_ids=())
    assert result.prompt_tokens <= 50


def test_truncate_modes_stop_at_the_first_statement_or_trim_the_finished_completion(run_dir):
    """syntax: ends at the first line where the document parses, then trims; trim: the model's own end,
    trimmed to the longest cut that parses; none: the raw text. The model's ids are fixed here."""
    completer = Completer.load(run_dir)
    raw = "y = x + 1\n    z = y * 2\n    )) (\n"
    ids = completer.tokenizer.encode(raw)
    assert completer.tokenizer.decode(ids) == raw

    def fixed_ids(prompt, params, cancelled):  # what the engine's generator does: ids, then the stop reason
        yield from ids
        return "length"

    def complete(truncate):
        return completer.complete("def f(x):\n    ", "\n\nprint(f(1))\n", path="m.py", max_new_tokens=len(ids),
                                  stop_ids=(), truncate=truncate, generate=fixed_ids)

    assert complete("none").text == raw
    syntax = complete("syntax")
    assert syntax.text == "y = x + 1\n" and syntax.stop_reason == "structure"
    trim = complete("trim")
    assert trim.text == "y = x + 1\n    z = y * 2\n" and trim.stop_reason == "length"
    with pytest.raises(ValueError, match="truncate must be one of"):
        complete("lines")


def test_completer_needs_a_tokenizer(tmp_path):
    model = tiny_model()
    save_checkpoint(model, model.cfg, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="tokenizer"):
        Completer.load(tmp_path / "ck")


def test_vocab_size_limits_generated_ids_to_the_tokenizer():
    import torch

    from lightcoder.infer.engine import generate
    from lightcoder.model.config import get_preset
    from lightcoder.model.llama import Transformer

    model = Transformer(get_preset("lc-tiny"))
    model.init_weights(seed=0)
    with torch.no_grad():  # make the padded ids the most likely ones
        model.output.weight[400:] += 5.0
    free = list(generate(model, [1, 5, 6], max_new_tokens=12, stop_ids=()))
    limited = list(generate(model, [1, 5, 6], max_new_tokens=12, stop_ids=(), vocab_size=400))
    assert any(t >= 400 for t in free)
    assert len(limited) == 12 and all(t < 400 for t in limited)


def test_completion_cut_mid_character_drops_the_unfinished_bytes(run_dir, monkeypatch):
    completer = Completer.load(run_dir)
    tok = completer.tokenizer
    text_ids = tok.encode("x = 1")
    e_ids = tok.encode("é")  # U+00E9 is two UTF-8 bytes; a small byte-level BPE keeps them apart
    if len(e_ids) < 2:
        pytest.skip("'é' is a single token in this tokenizer")
    first_byte_id = e_ids[0]
    assert tok.decode([first_byte_id]).endswith("\ufffd")

    def fake_generate(*args, **kwargs):
        yield from text_ids
        yield first_byte_id
        return "length"

    monkeypatch.setattr(completer.engine, "generate", fake_generate)
    result = completer.complete("y = ", max_new_tokens=len(text_ids) + 1)
    assert result.text == "x = 1" and result.new_tokens == len(text_ids) + 1


def test_middle_bits_equal_the_cost_of_decoding_the_reference_step_by_step(run_dir):
    """Teacher-forced bits of middle + </s> in one forward == the sum of -log2 p over an incremental
    (KV-cache) decode of the same tokens after the very prompt `complete` builds."""
    completer = Completer.load(run_dir)
    prefix, middle, suffix = "def add(a, b):\n    return ", "a + b", "\n\nprint(add(1, 2))\n"
    bits = completer.middle_bits(prefix, middle, suffix, path="m.py", max_new_tokens=16)
    prompt = completer.build(prefix, suffix, path="m.py", max_new_tokens=16)
    targets = completer.tokenizer.encode(middle) + [completer.tokenizer.eos_id]
    model, total = completer.model, 0.0
    cache = model.init_kv_cache(1, len(prompt) + len(targets))
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), kv_cache=cache, start_pos=0, last_logits_only=True)
        for i, target in enumerate(targets):
            total -= float(torch.log_softmax(logits[0, -1].float(), -1)[target]) / torch.log(torch.tensor(2.0))
            logits = model(torch.tensor([[target]]), kv_cache=cache, start_pos=len(prompt) + i)
    assert bits == pytest.approx(float(total), rel=1e-4) and bits > 0
    long_middle = "x = 1\n" * 200  # leaves too little context for a prompt: no bits, not an error
    assert completer.middle_bits(prefix, long_middle, suffix, path="m.py") is None
