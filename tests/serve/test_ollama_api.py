"""Ollama's API as Continue's Ollama provider uses it (core/llm/llms/Ollama.ts) and as Ollama's
docs/api.md describes it: /api/show decides whether FIM is on, /api/generate streams NDJSON."""

import json
import re

import httpx

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"
# Continue: _getGenerateOptions(options, prefix, suffix) for autocomplete, JSON.stringify drops undefined
CONTINUE_FIM = {"model": "tiny", "prompt": PREFIX, "suffix": SUFFIX, "raw": True, "keep_alive": 1800,
                "stream": True, "options": {"temperature": 0.01, "top_p": 0.95, "num_predict": 12,
                                            "stop": ["\n\n", "def "], "num_ctx": 256}}
CONTINUE_PARAM_LINE = re.compile(r'^(\S+)\s+((?:".*")|\S+)$')  # its parse of /api/show "parameters"


def test_continue_detects_fim_from_api_show(server):
    r = httpx.post(server.url + "/api/show", json={"name": "tiny"})
    assert r.status_code == 200
    body = r.json()
    # Continue: every parameters line must match (a miss throws before FIM is detected), then .Suffix
    assert all(CONTINUE_PARAM_LINE.match(line) for line in body["parameters"].split("\n"))
    assert ".Suffix" in body["template"] and "insert" in body["capabilities"]
    assert httpx.post(server.url + "/api/show", json={"model": "tiny:latest"}).status_code == 200


def test_continue_streamed_fim_parses_line_by_line(server):
    with httpx.stream("POST", server.url + "/api/generate", json=CONTINUE_FIM, timeout=60) as s:
        assert s.headers["content-type"].startswith("application/x-ndjson")
        raw = "".join(s.iter_text())
    lines = [json.loads(line) for line in raw.split("\n") if line.strip()]  # buffer.split("\n") as Continue
    assert all("error" not in j and isinstance(j["response"], str) for j in lines)
    assert all(j["done"] is False for j in lines[:-1]) and lines[-1]["done"] is True
    last = lines[-1]
    assert last["done_reason"] in ("stop", "length") and last["eval_count"] >= 1
    assert all(isinstance(last[k], int) for k in ("total_duration", "prompt_eval_count", "prompt_eval_duration",
                                                   "eval_duration", "load_duration"))
    text = "".join(j["response"] for j in lines)
    plain = httpx.post(server.url + "/api/generate", json={**CONTINUE_FIM, "stream": False}, timeout=60).json()
    assert plain["response"] == text and plain["done"] is True
    assert "\n\n" not in text and "def " not in text  # options.stop


def test_fim_matches_the_openai_route_and_tags_list_the_model(server):
    greedy = {"model": "tiny", "prompt": PREFIX, "suffix": SUFFIX, "stream": False,
              "options": {"num_predict": 10, "temperature": 0}}
    ours = httpx.post(server.url + "/api/generate", json=greedy, timeout=60).json()["response"]
    openai = httpx.post(server.url + "/v1/completions", json={"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 10,
                                                             "truncate": "none"}, timeout=60).json()
    assert ours == openai["choices"][0]["text"]
    tags = httpx.get(server.url + "/api/tags").json()["models"]
    assert [m["name"] for m in tags] == ["tiny:latest"] and tags[0]["details"]["family"] == "llama"
    assert httpx.get(server.url + "/api/version").json()["version"]


def test_ollama_errors_are_its_shape_and_name_the_field(server):
    r = httpx.post(server.url + "/api/generate", json={"model": "codellama:7b", "prompt": "x"})
    assert r.status_code == 404 and "codellama:7b" in r.json()["error"]
    r = httpx.post(server.url + "/api/generate", json={"prompt": "x"})
    assert r.status_code == 400 and "model" in r.json()["error"]
    r = httpx.post(server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "options": {"top_p": 7}})
    assert r.status_code == 400 and "options.top_p" in r.json()["error"]
    r = httpx.post(server.url + "/api/generate", content=b'{"model": "tiny", "suffix": "\\udc00"}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "suffix" in r.json()["error"]
    r = httpx.post(server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "images": ["AAAA"]})
    assert r.status_code == 400 and "images" in r.json()["error"]
    load = httpx.post(server.url + "/api/generate", json={"model": "tiny"}).json()
    assert load["done"] is True and load["response"] == ""  # Ollama's "load the model" request
