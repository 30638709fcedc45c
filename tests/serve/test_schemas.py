"""Request validation as pure functions: no server, no model."""

import pytest

from lightcoder.serve.schemas import (
    ApiError,
    CompletionRequest,
    ExtraFile,
    Limits,
    LlamaCppRequest,
    OllamaGenerateRequest,
    check_completion_request,
    check_llamacpp_request,
    check_ollama_generate,
    default_new_tokens,
    stop_list,
)

LIMITS = Limits(max_tokens_limit=64, max_prompt_chars=100, max_n=2, max_extra_files=1)
ROOM = 255  # max_seq_len 256


def error(fn, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*args, **kwargs)
    return e.value


def test_completion_request_gives_the_one_prompt_and_its_stop_list():
    req = CompletionRequest(prompt=["x = "], stop="\n", max_tokens=8)
    assert check_completion_request(req, LIMITS, ROOM) == ("x = ", ["\n"])


@pytest.mark.parametrize(("fields", "status", "param"), [
    ({"echo": True}, 400, "echo"),
    ({"logprobs": 1}, 400, "logprobs"),
    ({"prompt": ["a", "b"]}, 400, "prompt"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 65}, 400, "max_tokens"),
    ({"n": 3}, 400, "n"),
    ({"prompt": "x" * 90, "suffix": "y" * 11}, 413, "prompt+suffix characters"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
])
def test_completion_request_names_the_bad_field(fields, status, param):
    e = error(check_completion_request, CompletionRequest(**fields), LIMITS, ROOM)
    assert (e.status, e.param) == (status, param)


def test_llamacpp_request_settings_and_limits():
    run = check_llamacpp_request(LlamaCppRequest(n_predict=-1, samplers="kt", temperature=0.5), fim=True, n_slots=4,
                                 vocab_size=512, limits=LIMITS, context_room=ROOM)
    assert run == (64, 0.5, 40, 1.0, 0.0, 0.0)  # the server's limit; top_p and penalties not among the samplers
    listed = check_llamacpp_request(LlamaCppRequest(samplers="ket", frequency_penalty=0.5), fim=True, n_slots=4,
                                    vocab_size=512, limits=LIMITS, context_room=ROOM)
    assert (listed.frequency_penalty, listed.presence_penalty) == (0.5, None)  # None: the server's default
    common = {"fim": False, "n_slots": 4, "vocab_size": 512, "limits": LIMITS, "context_room": ROOM}
    assert error(check_llamacpp_request, LlamaCppRequest(id_slot=4), **common).param == "id_slot"
    assert error(check_llamacpp_request, LlamaCppRequest(prompt=[1, 512]), **common).param == "prompt"
    assert error(check_llamacpp_request, LlamaCppRequest(prompt=[1]), **{**common, "fim": True}).param == "prompt"
    two_files = LlamaCppRequest(input_extra=[ExtraFile(text="a"), ExtraFile(text="b")])
    assert error(check_llamacpp_request, two_files, **common).param == "input_extra entries"
    # /completion ignores input_prefix and input_suffix, /infill counts them
    long_prefix = LlamaCppRequest(input_prefix="x" * 101, n_predict=1)
    assert check_llamacpp_request(long_prefix, **common).n_predict == 1
    assert error(check_llamacpp_request, long_prefix, **{**common, "fim": True}).status == 413


def test_ollama_generate_refuses_what_it_cannot_honour():
    check_ollama_generate(OllamaGenerateRequest(model="m", prompt="x"))
    for field, value in (("images", ["a"]), ("format", "json"), ("context", [1])):
        assert error(check_ollama_generate, OllamaGenerateRequest(model="m", **{field: value})).param == field


def test_small_helpers():
    assert stop_list(None) == [] and stop_list("a") == ["a"] and stop_list(["a", "b"]) == ["a", "b"]
    assert default_new_tokens(-1, LIMITS, ROOM) == 64 and default_new_tokens(-1, LIMITS, 100) == 50
    assert default_new_tokens(0, LIMITS, ROOM) == 0
