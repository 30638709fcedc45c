"""Bad input gets a clear 4xx naming the field or limit, and the server keeps serving."""

import httpx
import pytest

from lightcoder.infer.completer import Completer
from lightcoder.serve.app import ServerConfig, create_app

CASES = [
    (b'{"prompt": "x", ', 400, "not valid JSON"),
    (b'{"prompt": "\xff\xfe"}', 400, "not valid UTF-8"),
    (b'[1, 2]', 400, "JSON object"),
    (b'{"prompt": "x", "max_tokens": -5}', 400, "max_tokens"),
    (b'{"prompt": "x", "max_tokens": 100000000}', 400, "max_tokens_limit"),
    (b'{"prompt": "x", "model": "gpt-4"}', 404, "does not exist"),
    (b'{"prompt": "x", "temperature": "hot"}', 400, "temperature"),
    (b'{"prompt": "x", "echo": true}', 400, "echo"),
    (b'{"prompt": "x", "n": 99}', 400, "max_n"),
    (b'{"prompt": "' + b"x" * 30_000 + b'"}', 413, "max_prompt_chars"),
    (b'{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}', 400, "stop"),
    (b'{"prompt": "\\ud800"}', 400, "invalid field prompt: lone UTF-16 surrogate"),  # valid JSON, not Unicode
    (b'{"prompt": "x", "suffix": "a\\udfff"}', 400, "invalid field suffix"),
    (b'{"prompt": "x", "top_p": NaN}', 400, "NaN is not a JSON number"),  # Python's json reads it by default
    (b'{"prompt": "x", "max_tokens": 1e400}', 400, "out of the range of a double"),  # valid JSON, read as inf
    (b'{"prompt": "x", "seed": ' + b"9" * 5000 + b'}', 400, "5000 digits is out of range"),
    (b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b'}', 400, "nested too deeply"),  # RecursionError in json
    (b'{"prompt": "x", "path": "' + b"a/" * 1000 + b'f.py"}', 400, "send a shorter path"),
]


@pytest.mark.parametrize("body,status,words", CASES, ids=[c[2] for c in CASES])
def test_bad_completion_requests(server, body, status, words):
    r = httpx.post(server.url + "/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    ok = httpx.post(server.url + "/v1/completions", json={"prompt": "x = ", "max_tokens": 2})
    assert ok.status_code == 200


@pytest.mark.parametrize("endpoint,body", [
    ("/v1/completions", {"prompt": "x", "max_tokens": 3, "temperature": 0.7, "seed": 2**64, "n": 2}),
    ("/infill", {"input_prefix": "x", "n_predict": 3, "temperature": 0.7, "seed": -(2**70)}),
    ("/api/generate", {"model": "tiny", "prompt": "x", "stream": False,
                       "options": {"num_predict": 3, "temperature": 0.7, "seed": 2**80}}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 3, "temperature": 1e-45}),  # overflows fp32 logits
    ("/infill", {"input_prefix": "x", "n_predict": 3, "temperature": 1e-300, "stream": True}),
])
def test_any_seed_or_tiny_temperature_is_served_and_the_server_goes_on(server, endpoint, body):
    """Seeds past torch's 64 bits wrap; temperatures that would overflow the logits decode greedily.
    Either used to kill the batch thread or fail every running request."""
    r = httpx.post(server.url + endpoint, json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert "error" not in r.text
    ok = httpx.post(server.url + "/v1/completions", json={"prompt": "x = ", "max_tokens": 2}, timeout=30)
    assert ok.status_code == 200


def test_unknown_paths_get_the_error_object_in_each_api_shape(server):
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(server.url + "/v1/completions")
    assert r.status_code == 405 and "POST" in r.headers["allow"] and "docs/serving.md" in r.json()["error"]["message"]
    r = httpx.get(server.url + '/scan/"x"')
    assert r.status_code == 404
    metrics = httpx.get(server.url + "/metrics").text
    assert 'endpoint="unmatched",status="404"' in metrics and "/scan" not in metrics  # made-up paths add no labels
    r = httpx.post(server.url + "/api/generate", content=b'{"prompt": Infinity}')
    assert r.status_code == 400 and "Infinity is not a JSON number" in r.json()["error"]  # Ollama's shape


def test_bad_infill_requests(server):
    r = httpx.post(server.url + "/infill", json={"input_prefix": "x", "n_predict": 10_000})
    assert r.status_code == 400 and "n_predict" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/infill", json={"input_prefix": "x", "input_extra": "nope"})
    assert r.status_code == 400 and "input_extra" in r.json()["error"]["message"]


def test_api_key_is_required_when_set(tiny_run, make_server):
    app = create_app(Completer.load(tiny_run), ServerConfig(api_key="s3cret"))
    with make_server(app) as s:
        body = {"prompt": "x", "max_tokens": 1}
        assert httpx.post(s.url + "/v1/completions", json=body).status_code == 401
        assert httpx.post(s.url + "/v1/completions", json=body,
                          headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(s.url + "/v1/completions", json=body,
                          headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(s.url + "/health").status_code == 200  # open: load balancers probe it


def test_full_queue_answers_429_naming_the_limit(tiny_run, make_server):
    from lightcoder.serve.schemas import Limits

    app = create_app(Completer.load(tiny_run), ServerConfig(limits=Limits(max_queue=0)))
    with make_server(app) as s:
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x"})
        assert r.status_code == 429 and "max_queue" in r.json()["error"]["message"]
        # streamed requests too, before the reply starts (Ollama clients stream by default)
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x", "stream": True})
        assert r.status_code == 429 and "max_queue" in r.json()["error"]["message"]
        r = httpx.post(s.url + "/api/generate", json={"model": "lightcoder", "prompt": "x"})
        assert r.status_code == 429 and "max_queue" in r.json()["error"]
        r = httpx.post(s.url + "/infill", json={"input_prefix": "x", "input_suffix": "", "stream": True})
        assert r.status_code == 429


def test_disconnected_stream_is_cancelled(server, completer):
    """A client that leaves mid-stream frees the engine: the next request is served at once."""
    with httpx.stream("POST", server.url + "/v1/completions",
                      json={"prompt": "x = ", "max_tokens": 64, "stream": True, "truncate": "none"}) as s:
        next(s.iter_lines())
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "y = ", "max_tokens": 2}, timeout=30)
    assert r.status_code == 200
    assert httpx.get(server.url + "/health").json()["queue_depth"] == 0


def test_requests_the_model_context_cannot_hold_are_400_even_when_streaming(tiny_run, make_server):
    from lightcoder.serve.schemas import Limits

    app = create_app(Completer.load(tiny_run), ServerConfig(limits=Limits(max_tokens_limit=1000)))
    with make_server(app) as s:  # lc-tiny: 256 positions
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 300})
        assert r.status_code == 400 and "max_seq_len" in r.json()["error"]["message"]
        for stream in (False, True):  # 255 new tokens leave 1 position: no room for the prompt
            r = httpx.post(s.url + "/v1/completions", json={"prompt": "x = 1", "suffix": "\n", "max_tokens": 255,
                                                            "stream": stream})
            assert r.status_code == 400 and "no room" in r.json()["error"]["message"]
        assert httpx.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("shape", ["sse", "ndjson"])
def test_a_stream_that_fails_midway_ends_with_an_error_item_not_silence(shape):
    """The status line is out by then, so the client learns of the failure from the last item."""
    import asyncio
    import json as jsonlib

    from lightcoder.serve.metrics import Metrics
    from lightcoder.serve.streaming import ndjson_response, sse_response

    async def items():
        yield {"content": "x = "}
        raise RuntimeError("probability tensor contains nan")

    async def body(response):
        return [chunk async for chunk in response.body_iterator]

    metrics = Metrics()
    respond = sse_response if shape == "sse" else ndjson_response
    chunks = asyncio.run(body(respond(items(), metrics, "/completion", 0.0)))
    last = chunks[-1].removeprefix("data: ").strip()
    error = jsonlib.loads(last)["error"]
    assert "probability tensor contains nan" in (error["message"] if shape == "sse" else error)
    assert len(chunks) == 2 and "[DONE]" not in "".join(chunks)
    assert metrics.requests[("/completion", 500)] == 1
