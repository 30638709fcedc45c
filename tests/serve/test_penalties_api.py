"""frequency_penalty / presence_penalty through the three APIs: the Completer's tokens, the server's default
for requests that send none, llama.cpp's `samplers` switch, range errors, and `serve`'s default from a run.
Also which prompt an empty suffix gets: infilling (FIM form) from /infill and an OpenAI `suffix`, else NTP."""

import json

import httpx
import pytest

from lightcoder.serve.app import ServerConfig, create_app
from lightcoder.serve.command import default_penalties
from lightcoder.serve.schemas import Limits

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


def expected(completer, **kw):
    return completer.complete(PREFIX, SUFFIX, max_new_tokens=24, **kw).text


def test_openai_request_penalties_give_the_completers_tokens(server, completer):
    body = {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 24, "truncate": "none"}
    for extra in ({}, {"frequency_penalty": 1.5}, {"presence_penalty": 2.0, "frequency_penalty": -0.5}):
        r = httpx.post(server.url + "/v1/completions", json={**body, **extra})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == expected(completer, **extra)
    # the penalties change this tiny model's output (else the comparisons above prove nothing)
    assert expected(completer, frequency_penalty=2.0, presence_penalty=2.0) != expected(completer)


def test_the_servers_default_applies_when_a_request_sends_none(tiny_run, completer, make_server):
    config = ServerConfig(model_name="tiny", limits=Limits(max_tokens_limit=64), frequency_penalty=2.0,
                          presence_penalty=1.0)
    with make_server(create_app(completer, config)) as s:
        body = {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 24, "truncate": "none"}
        text = httpx.post(s.url + "/v1/completions", json=body).json()["choices"][0]["text"]
        assert text == expected(completer, frequency_penalty=2.0, presence_penalty=1.0)
        zero = httpx.post(s.url + "/v1/completions", json={**body, "frequency_penalty": 0, "presence_penalty": 0})
        assert zero.json()["choices"][0]["text"] == expected(completer)
        infill = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 24, "truncate": "none"}
        data = httpx.post(s.url + "/infill", json=infill).json()
        assert data["generation_settings"]["frequency_penalty"] == 2.0
        assert data["content"] == expected(completer, frequency_penalty=2.0, presence_penalty=1.0)
        # llama.cpp: penalties apply only when "penalties" is among the listed samplers
        off = httpx.post(s.url + "/infill", json={**infill, "samplers": ["top_k", "temperature"]}).json()
        assert off["generation_settings"]["frequency_penalty"] == 0.0 and off["content"] == expected(completer)
        ollama = {"model": "tiny", "prompt": PREFIX, "suffix": SUFFIX, "stream": False,
                  "options": {"num_predict": 24, "frequency_penalty": 0.0, "presence_penalty": 0.0}}
        assert httpx.post(s.url + "/api/generate", json=ollama).json()["response"] == expected(completer)


@pytest.mark.parametrize("route,body", [
    ("/v1/completions", {"prompt": "x", "frequency_penalty": 2.5}),
    ("/v1/completions", {"prompt": "x", "presence_penalty": -3}),
    ("/infill", {"input_prefix": "x", "frequency_penalty": 9}),
])
def test_penalties_outside_openais_range_are_a_400_naming_the_field(server, route, body):
    r = httpx.post(server.url + route, json=body)
    assert r.status_code == 400, r.text
    assert "penalty" in r.json()["error"]["message"]


def test_serve_takes_the_runs_eval_penalties_unless_flags_say_otherwise(tmp_path):
    run = tmp_path / "run"
    (run / "ckpt" / "step_000010").mkdir(parents=True)
    (run / "ckpt" / "step_000010" / "config.json").write_text(json.dumps({"dim": 8}))  # the HF model config
    (run / "config.json").write_text(json.dumps({"eval": {"frequency_penalty": 0.5}}))
    assert default_penalties(str(run), None, None) == (0.5, 0.0)
    assert default_penalties(str(run / "ckpt" / "step_000010"), None, None) == (0.5, 0.0)
    assert default_penalties(str(run), 0.0, 0.25) == (0.0, 0.25)
    (run / "config.json").write_text(json.dumps({"eval": {"per_type": 24}}))  # a run from before the setting
    assert default_penalties(str(run), None, None) == (0.0, 0.0)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("not json")
    assert default_penalties(str(hf), None, None) == (0.0, 0.0)


def test_an_empty_suffix_is_infilling_on_infill_and_openai_suffix_else_plain_continuation(server, completer):
    fim = completer.build(PREFIX, "", max_new_tokens=12, fim=True)
    ntp = completer.build(PREFIX, "", max_new_tokens=12)
    assert fim != ntp
    infill = {"input_prefix": PREFIX, "input_suffix": "", "n_predict": 12, "truncate": "none", "return_tokens": True}
    got = httpx.post(server.url + "/infill", json=infill).json()
    assert got["content"] == completer.complete(PREFIX, "", max_new_tokens=12, fim=True).text
    assert got["tokens_evaluated"] == len(fim)
    with httpx.stream("POST", server.url + "/infill", json={**infill, "stream": True}) as r:  # tokenized first
        pieces = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(p["content"] for p in pieces) == got["content"] and pieces[-1]["tokens_evaluated"] == len(fim)
    body = {"prompt": PREFIX, "max_tokens": 12, "truncate": "none"}
    with_suffix = httpx.post(server.url + "/v1/completions", json={**body, "suffix": ""}).json()
    without = httpx.post(server.url + "/v1/completions", json=body).json()
    assert with_suffix["usage"]["prompt_tokens"] == len(fim) and without["usage"]["prompt_tokens"] == len(ntp)
    assert without["choices"][0]["text"] == completer.complete(PREFIX, "", max_new_tokens=12).text


REPEATING = "total = compute(alpha, beta)\nother = compute(alpha, beta)\nthird = compute("


def test_the_servers_cache_weight_gives_the_completers_tokens_streamed_or_not(completer, make_server):
    """The n-gram cache (infer/ngram_cache.py) as `serve --cache-weight` applies it, on every route."""
    cached = completer.complete(REPEATING, "\n", path="m.py", max_new_tokens=16, cache_weight=0.9).text
    assert cached != completer.complete(REPEATING, "\n", path="m.py", max_new_tokens=16).text  # it matters here
    config = ServerConfig(model_name="tiny", limits=Limits(max_tokens_limit=64), cache_weight=0.9)
    with make_server(create_app(completer, config)) as s:
        body = {"prompt": REPEATING, "suffix": "\n", "path": "m.py", "max_tokens": 16, "truncate": "none"}
        assert httpx.post(s.url + "/v1/completions", json=body).json()["choices"][0]["text"] == cached
        with httpx.stream("POST", s.url + "/v1/completions", json={**body, "stream": True}) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert "".join(c["choices"][0]["text"] for c in chunks) == cached
        infill = {"input_prefix": REPEATING, "input_suffix": "\n", "path": "m.py", "n_predict": 16, "truncate": "none"}
        assert httpx.post(s.url + "/infill", json=infill).json()["content"] == cached


def test_serve_takes_the_runs_cache_weight_unless_the_flag_says_otherwise(tmp_path):
    from lightcoder.serve.command import default_cache_weight

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"eval": {"cache_weight": 0.5}}))
    assert default_cache_weight(str(run), None) == 0.5 and default_cache_weight(str(run), 0.0) == 0.0
    (run / "config.json").write_text(json.dumps({"eval": {"frequency_penalty": 1.0}}))  # before the setting
    assert default_cache_weight(str(run), None) == 0.0


def test_the_cache_reads_the_whole_text_around_the_cursor_not_only_the_prompt(tiny_run):
    """A name that only the part of the prefix cut from the prompt holds is still copied; the Completer's ids
    are the reference decoder's with the same cache."""
    from lightcoder.infer.completer import Completer
    from lightcoder.infer.engine import generate
    from lightcoder.infer.ngram_cache import CacheMix, NgramCache

    c = Completer.load(tiny_run)
    line = "result = transform(alpha, beta, gamma) + offset\n"  # no context of 3 ids twice
    full = c.tokenizer.encode(line)
    cut = next(k for k in range(len(full) - 2, 3, -1)  # a cut whose text tokenizes back to the same ids
               if c.tokenizer.encode(c.tokenizer.decode(full[:k])) == full[:k])
    filler = "".join(f"v{i} = {i}\n" for i in range(400))  # pushes the first line out of a 160-id prompt
    prefix = line + filler + c.tokenizer.decode(full[:cut])
    prompt = c.build(prefix, "\n", path="m.py", max_new_tokens=6, max_prompt_tokens=160)
    assert c.tokenizer.decode(prompt).count("transform") == 1  # the cursor's line; the first one is cut off
    got = []

    def recording(prompt, params, cancelled):
        stream = c.engine.generate(prompt, params, cancelled=cancelled)
        while True:
            try:
                token = next(stream)
            except StopIteration as end:
                return end.value
            got.append(token)
            yield token

    c.complete(prefix, "\n", path="m.py", max_new_tokens=6, max_prompt_tokens=160, cache_weight=0.9,
               generate=recording)
    source = NgramCache.from_texts([prefix, "\n"], c.tokenizer.encode)
    assert got == list(generate(c.model, prompt, max_new_tokens=6, stop_ids=c.tokenizer.stop_ids,
                                cache=CacheMix.for_prompt(prompt, 0.9, source), vocab_size=c.engine.vocab_size))
    assert got[0] == full[cut]  # the first line's continuation, from outside the prompt
    prompt_only = CacheMix.for_prompt(prompt, 0.9)
    assert prompt_only.source.followers([*prompt_only.prompt_tail], min_order=3) == (0, {})  # nothing to copy


def test_requests_built_from_text_keep_the_stop_guard_when_sent_on_as_ids(completer):
    """Streamed requests are tokenized before the reply starts and decoded from those ids; the guard must
    still judge their text (only a request that came as ids has none)."""
    seen = []

    def spy(prompt, params, cancelled):
        seen.append(params.stop_guard)
        return iter(())

    prompt = completer.build("def f():\n    ", "\n", path="m.py", max_new_tokens=8)
    for kwargs in ({}, {"prompt_ids": prompt}):
        list(completer.stream("def f():\n    ", "\n", path="m.py", max_new_tokens=8, generate=spy, **kwargs))
    list(completer.stream("", "", path="m.py", max_new_tokens=8, generate=spy, prompt_ids=prompt))
    assert seen[0] is not None and seen[1] is not None and seen[2] is None


def test_a_streamed_request_with_an_empty_prefix_decodes_as_the_same_request_unstreamed(completer):
    """The server says the ids came from the text (ids_from_text), so an empty prefix is still a text request:
    the stop guard judges it and the cache reads the suffix, not the prompt's ids."""
    seen = []

    def spy(prompt, params, cancelled):
        seen.append((params.stop_guard is not None, len(params.cache.source)))
        return iter(())

    suffix = "    return x\n\nprint(f(1))\n"
    prompt = completer.build("", suffix, path="m.py", max_new_tokens=8)
    for kwargs in ({}, {"prompt_ids": prompt, "ids_from_text": True}, {"prompt_ids": prompt}):
        list(completer.stream("", suffix, path="m.py", max_new_tokens=8, generate=spy, cache_weight=0.3, **kwargs))
    # positions with an id before and after them: the suffix's ids but its first (an empty prefix adds none)
    assert seen[0] == seen[1] and seen[0][0] and seen[0][1] == len(completer.tokenizer.encode(suffix)) - 1
    assert seen[2] == (False, len(prompt) - 1)  # ids with no text: a request sent as ids


def test_serve_refuses_a_cache_weight_outside_0_1_before_loading(tmp_path, capsys):
    from lightcoder.serve.command import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "no-such-run"), "--cache-weight", "1.5", "--port", "0"])
    assert exit_info.value.code == 2
    assert "--cache-weight: cache_weight must be a number in [0, 1)" in capsys.readouterr().err
