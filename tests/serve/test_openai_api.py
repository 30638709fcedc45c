"""The official openai client against a real server: completions with suffix, streaming, n, stop."""

import httpx
import pytest

openai = pytest.importorskip("openai")

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_completion_with_suffix_matches_the_completer(client, completer):
    r = client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=12, temperature=0,
                                  extra_body={"path": "m.py", "truncate": "none"})
    expected = completer.complete(PREFIX, SUFFIX, path="m.py", max_new_tokens=12)
    assert r.choices[0].text == expected.text
    assert r.usage.prompt_tokens == expected.prompt_tokens and r.usage.completion_tokens == expected.new_tokens
    assert r.choices[0].finish_reason in ("stop", "length") and r.model == "tiny"


@pytest.mark.parametrize("truncate", ["syntax", "trim"])
def test_truncate_modes_match_the_completer_and_cut_the_raw_text(client, completer, truncate):
    def served(mode):
        return client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=24, temperature=0,
                                         extra_body={"path": "m.py", "truncate": mode}).choices[0].text

    text, raw = served(truncate), served("none")
    assert text == completer.complete(PREFIX, SUFFIX, path="m.py", max_new_tokens=24, truncate=truncate).text
    assert raw.startswith(text)  # greedy: both modes only cut the raw completion
    if truncate == "trim":
        with pytest.raises(openai.BadRequestError, match="needs the whole completion"):
            client.completions.create(model="tiny", prompt=PREFIX, max_tokens=4, stream=True,
                                      extra_body={"truncate": "trim"})


def test_streaming_concatenates_to_the_plain_completion(client):
    kwargs = dict(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=16, extra_body={"truncate": "none"})
    plain = client.completions.create(**kwargs).choices[0].text
    chunks = list(client.completions.create(stream=True, **kwargs))
    assert "".join(c.choices[0].text for c in chunks) == plain
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_n_stop_and_sampling(client):
    r = client.completions.create(model="tiny", prompt="x = ", max_tokens=10, n=3, temperature=1.0, seed=5,
                                  extra_body={"truncate": "none"})
    assert [c.index for c in r.choices] == [0, 1, 2]
    again = client.completions.create(model="tiny", prompt="x = ", max_tokens=10, n=3, temperature=1.0, seed=5,
                                      extra_body={"truncate": "none"})
    assert [c.text for c in r.choices] == [c.text for c in again.choices]  # seeded
    unseeded = [client.completions.create(model="tiny", prompt="x = ", max_tokens=10, n=3, temperature=1.0,
                                          extra_body={"truncate": "none"}) for _ in range(2)]
    texts = [[c.text for c in u.choices] for u in unseeded]
    assert texts[0] != texts[1]  # no seed sent: each request draws its own (OpenAI's behaviour)
    full = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=20, extra_body={"truncate": "none"})
    text = full.choices[0].text
    if len(text) > 3:
        stop = text[2:4]
        cut = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=20, stop=[stop],
                                        extra_body={"truncate": "none"})
        assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_models_health_metrics(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    metrics = httpx.get(server.url + "/metrics").text
    assert "lightcoder_prefix_cache_hit_rate" in metrics and 'lightcoder_request_seconds_bucket{endpoint="/v1/completions"' in metrics


def test_keystrokes_reuse_the_prompt_cache(server, completer):
    code = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json.lo"
    reused = []
    for i in range(len(code) - 6, len(code) + 1):
        r = httpx.post(server.url + "/v1/completions", json={"prompt": code[:i], "suffix": "\n", "max_tokens": 4})
        assert r.status_code == 200
        reused.append(r.json()["lightcoder"]["reused_prompt_tokens"] / r.json()["usage"]["prompt_tokens"])
    assert min(reused[1:]) > 0.5  # every keystroke after the first recomputes only the tail


def test_infill_llama_cpp_api(server, completer):
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 8, "truncate": "none",
            "input_extra": [{"filename": "util.py", "text": "def add(a, b):\n    return a + b\n"}]}
    r = httpx.post(server.url + "/infill", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["stop"] is True and data["tokens_predicted"] <= 8 and isinstance(data["content"], str)
    with httpx.stream("POST", server.url + "/infill", json={**body, "stream": True}) as s:
        events = [line for line in s.iter_lines() if line.startswith("data: ")]
    import json

    parts = [json.loads(e[6:]) for e in events]
    assert parts[-1]["stop"] is True and "".join(p["content"] for p in parts) == data["content"]


def test_cross_file_context_goes_before_the_prompt(completer, tmp_path):
    from lightcoder.infer.retrieval import ChunkIndex, query_text, workspace_files

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("def add_numbers(a, b):\n    return a + b\n")
    (tmp_path / "notes.bin").write_bytes(b"\xff\xfe")  # unknown extension: skipped
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.py").write_text("secret = 1\n")
    files = workspace_files(tmp_path)
    assert [p for p, _ in files] == ["pkg/util.py"]
    prefix = "from pkg.util import add_numbers\n\nresult = add_numbers(1, 2)\nprint(res"
    snippets = ChunkIndex.from_files(files).search(query_text(prefix), k=3)
    ids = completer.build(prefix, "\n", path="main.py", max_new_tokens=8, context=snippets, max_context_tokens=120)
    text = completer.tokenizer.decode(ids)
    assert text.startswith("<s># the file path is: pkg/util.py\n# the code file is written by Python\n"
                           "def add_numbers(a, b):\n    return a + b\n</s><s><AIX-SPAN-PRE>")
    assert ids[-len(completer.build(prefix, "\n", path="main.py", max_new_tokens=8)):] == \
        completer.build(prefix, "\n", path="main.py", max_new_tokens=8)
