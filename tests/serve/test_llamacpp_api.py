"""llama.cpp's server contract as the editor plugins use it: request bodies in the exact shape llama.vim
and llama.vscode send (from their public sources and llama.cpp's tools/server/README.md), replies
checked the way each plugin's parser reads them."""

import json

import httpx
import pytest

PREFIX = "import json\n\n\ndef load(path):\n"
LINE = "    with open(path) as f"  # the cursor line up to the cursor: llama.vim's `prompt`
SUFFIX = "\n        return json.load(f)\n"
EXTRA = [{"text": "def dump(obj, path):\n    with open(path, 'w') as f:\n        json.dump(obj, f)\n",
          "time": [1733, 512], "filename": "io_utils.py"}]

# llama.vim (autoload/llama.vim, llama#fim): the FIM request
LLAMA_VIM_FIM = {
    "input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": EXTRA, "prompt": LINE, "n_predict": 24,
    "n_indent": 4, "top_k": 40, "top_p": 0.99, "stream": False, "samplers": ["top_k", "top_p", "infill"],
    "cache_prompt": True, "t_max_prompt_ms": 500, "t_max_predict_ms": 1500,
    "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms",
                        "timings/prompt_per_second", "timings/predicted_n", "timings/predicted_ms",
                        "timings/predicted_per_token_ms", "timings/predicted_per_second", "truncated",
                        "tokens_cached"],
}
# llama.vim (s:ring_update): the background request that only fills the cache with the extra context
LLAMA_VIM_RING = {"input_prefix": "", "input_suffix": "", "input_extra": EXTRA, "prompt": "", "n_predict": 0,
                  "temperature": 0.0, "stream": False, "samplers": [], "cache_prompt": True,
                  "t_max_prompt_ms": 1, "t_max_predict_ms": 1, "response_fields": [""]}
# llama.vscode (src/llama-server.ts, createRequestPayload): completion, then the no-predict warm-up
LLAMA_VSCODE_FIM = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": EXTRA, "prompt": LINE,
                    "n_predict": 24, "top_k": 40, "top_p": 0.99, "stream": False,
                    "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True, "n_indent": 4,
                    "t_max_prompt_ms": 500, "t_max_predict_ms": 2500}
LLAMA_VSCODE_PREPARE = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": EXTRA, "prompt": LINE,
                        "n_predict": 0, "samplers": [], "cache_prompt": True, "t_max_prompt_ms": 500,
                        "t_max_predict_ms": 1}
TIMING_KEYS = ("prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_n", "predicted_ms",
               "predicted_per_token_ms", "predicted_per_second")


def post(server, body, path="/infill"):
    r = httpx.post(server.url + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_llama_vim_fim_reply_has_the_flattened_fields_its_parser_reads(server):
    assert post(server, LLAMA_VIM_RING) == {}  # response_fields [""]: nothing asked, nothing sent
    data = post(server, LLAMA_VIM_FIM)
    # s:fim_render: json_decode, get(.., 'content'), 'tokens_cached', has_key('timings/prompt_n') ...
    assert set(data) == {"content", "truncated", "tokens_cached", *(f"timings/{k}" for k in TIMING_KEYS)}
    assert isinstance(data["content"], str) and data["truncated"] is False
    assert all(isinstance(data[f"timings/{k}"], (int, float)) for k in TIMING_KEYS)
    assert data["timings/predicted_n"] >= 1 and data["timings/prompt_n"] >= 1
    typed = post(server, {**LLAMA_VIM_FIM, "prompt": LINE + ":"})  # the next keystroke
    assert typed["tokens_cached"] > typed["timings/prompt_n"]  # most of the prompt came from the cache
    assert data["timings/predicted_per_second"] > 0 and data["timings/prompt_ms"] > 0
    later = [line for line in data["content"].split("\n")[1:] if line.strip()]
    assert all(len(line) - len(line.lstrip()) >= 4 for line in later)  # n_indent 4 cut dedented lines


def test_llama_vscode_reply_matches_its_llama_response_type(server):
    warm = post(server, LLAMA_VSCODE_PREPARE)
    assert warm["content"] == "" and warm["tokens_predicted"] == 0 and warm["stop"] is True
    data = post(server, LLAMA_VSCODE_FIM)
    # interface LlamaResponse {content?, generation_settings?, tokens_cached?, truncated?, timings?{...}}
    assert isinstance(data["content"], str) and isinstance(data["generation_settings"], dict)
    assert isinstance(data["tokens_cached"], int) and isinstance(data["truncated"], bool)
    assert all(isinstance(data["timings"][k], (int, float)) for k in TIMING_KEYS)
    assert data["tokens_cached"] >= warm["tokens_evaluated"] - 1  # the warm-up's prompt was reused
    assert data["stop_type"] in ("eos", "limit", "word") and data["generation_settings"]["n_predict"] == 24
    assert data["timings"]["prompt_n"] + data["tokens_cached"] == data["tokens_evaluated"]


def test_a_warm_up_of_a_long_file_fills_the_cache_the_next_request_reads(server):
    """n_predict 0 on a file longer than the context: the warm-up's prompt is cut as a request that leaves
    its length to the server would be (not to the whole context, which the scheduler refuses)."""
    import inspect
    import textwrap

    source = inspect.getsource(textwrap)
    cut = source.index("def fill(")
    body = {"input_prefix": source[:cut], "input_suffix": source[cut:], "cache_prompt": True, "samplers": []}
    warm = post(server, {**body, "n_predict": 0})
    assert warm["tokens_predicted"] == 0 and warm["tokens_evaluated"] > 0
    data = post(server, body)  # n_predict -1: the server's default length
    assert data["tokens_evaluated"] == warm["tokens_evaluated"]  # the same prompt ids
    assert data["tokens_cached"] >= warm["tokens_evaluated"] - 1


def test_prompt_goes_after_the_middle_token(server, completer):
    data = post(server, {"input_prefix": PREFIX, "input_suffix": SUFFIX, "prompt": LINE, "n_predict": 6,
                         "truncate": "none", "samplers": []})
    expected = completer.complete(PREFIX + LINE, SUFFIX, max_new_tokens=6)  # aiXcoder SPM: the prefix is last
    assert data["content"] == expected.text and data["tokens_evaluated"] == expected.prompt_tokens
    psm = completer.build(PREFIX, SUFFIX, mode="psm", middle=LINE)
    assert psm[-len(completer.tokenizer.encode(LINE)):] == completer.tokenizer.encode(LINE)


def test_streaming_completion_endpoint_and_token_prompts(server, completer):
    body = {"prompt": "def add(a, b):\n    return", "n_predict": 8, "stream": True, "truncate": "none",
            "response_fields": ["content", "stop", "timings/predicted_n"]}
    with httpx.stream("POST", server.url + "/completion", json=body, timeout=60) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert all(e["stop"] is False for e in events[:-1]) and events[-1]["stop"] is True
    plain = post(server, {**body, "stream": False, "response_fields": []}, "/completion")
    assert "".join(e["content"] for e in events) == plain["content"]
    assert events[-1]["timings/predicted_n"] == plain["timings"]["predicted_n"]
    ids = completer.build("def add(a, b):\n    return", "", max_new_tokens=8)
    by_ids = post(server, {"prompt": ids, "n_predict": 8, "truncate": "none"}, "/completion")
    assert by_ids["content"] == plain["content"]
    refused = httpx.post(server.url + "/completion", json={**body, "truncate": "trim"}, timeout=60)
    assert refused.status_code == 400 and "stream: false" in refused.json()["error"]["message"]


def test_slots_and_props_describe_the_batch(server):
    slots = httpx.get(server.url + "/slots").json()
    assert [s["id"] for s in slots] == [0, 1, 2, 3]
    assert all({"id_task", "n_ctx", "is_processing", "params", "next_token"} <= set(s) for s in slots)
    props = httpx.get(server.url + "/props").json()
    assert props["total_slots"] == 4 and props["default_generation_settings"]["n_ctx"] > 0
    pinned = post(server, {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 2, "id_slot": 2})
    assert pinned["id_slot"] == 2


@pytest.mark.parametrize("body,field", [
    ({"input_prefix": "x", "id_slot": 9}, "id_slot"),
    ({"input_prefix": "x", "samplers": ["top_k", "nucleus"]}, "samplers"),
    ({"input_prefix": "x", "samplers": "kpz"}, "samplers"),
    ({"input_prefix": "x", "n_predict": "many"}, "n_predict"),
    ({"input_prefix": "x", "n_predict": -3}, "n_predict"),
    ({"input_prefix": "x", "n_indent": -1}, "n_indent"),
    ({"input_prefix": "x", "input_extra": [{"filename": 3, "text": "y"}]}, "input_extra.0.filename"),
    ({"input_prefix": "x", "response_fields": "content"}, "response_fields"),
    ({"input_prefix": "x", "prompt": [1, 2]}, "prompt"),
    ({"input_prefix": "\ud800"}, "input_prefix"),
    ({"input_prefix": "x", "input_extra": [{"filename": "a.py", "text": "ok \udc00"}]}, "input_extra.0.text"),
])
def test_bad_fields_get_a_400_naming_them(server, body, field):
    r = httpx.post(server.url + "/infill", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text  # json.dumps escapes a lone surrogate as \ud800: valid JSON
    assert r.json()["error"]["param"] == field and field.split(".")[0] in r.json()["error"]["message"]


def test_n_indent_ends_as_llama_cpp_says_and_streams_no_indentation_it_takes_back():
    """llama.cpp ends an n_indent cut with stop_type "limit"; a streamed completion holds back a last line of
    bare indentation, which the cut may drop (it was sent before the dedented code arrived)."""
    from lightcoder.infer.completer import Completion, _held_back
    from lightcoder.serve.llamacpp_routes import stop_type

    cut = Completion(text="x = 1\n", prompt_tokens=3, new_tokens=4, stop_reason="indent", seconds=0.0)
    assert stop_type(cut) == "limit"
    assert _held_back("if x:\n    y\n  ", [], min_indent=4) == 2  # "  " may begin a dedented line
    assert _held_back("if x:\n    y\n    z", [], min_indent=4) == 0
    assert _held_back("if x:\n    y\n  ", [], min_indent=0) == 0  # no n_indent: nothing to take back
