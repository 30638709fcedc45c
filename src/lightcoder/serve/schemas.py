"""Typed requests and the server's limits; bad input becomes an `ApiError` naming the field or limit.

Bodies are parsed here, not by FastAPI, so every failure (invalid UTF-8, malformed JSON, wrong types,
a limit) gets a 4xx with an OpenAI-style error object that says what to fix:

    {"error": {"message": "max_tokens=100000 is over the server limit max_tokens_limit=512; ...",
               "type": "invalid_request_error", "param": "max_tokens", "code": "limit_exceeded"}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError


@dataclass(kw_only=True)
class Limits:
    max_prompt_chars: int = 400_000  # prefix + suffix + extra files, in characters
    max_tokens_limit: int = 512  # max_tokens / n_predict per request
    max_n: int = 8  # completions per request
    max_queue: int = 64  # requests waiting or running; more get 429
    max_seconds: float = 30.0  # wall time of one generation
    max_extra_files: int = 64  # input_extra entries


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class CompletionRequest(BaseModel):
    """OpenAI legacy completions (https://platform.openai.com/docs/api-reference/completions)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    prompt: str | list[str] = ""
    suffix: str | None = None
    max_tokens: int = 16
    temperature: float = Field(0.0, ge=0.0, le=2.0)  # greedy by default: what an editor wants
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | list[str] | None = None
    echo: bool = False
    seed: int | None = None
    logprobs: int | None = None
    best_of: int | None = None
    # OpenAI's penalties over the ids generated so far (infer/penalties.py); None: the server's default
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    # lightcoder extensions
    path: str = ""  # file path: aiXcoder's header lines and the language for syntax truncation
    mode: Literal["spm", "psm"] = "spm"
    truncate: Literal["none", "syntax", "trim"] = "syntax"


class ExtraFile(BaseModel):
    model_config = ConfigDict(extra="ignore")  # llama.vim also sends "time"
    filename: str = ""
    text: str = ""


class LlamaCppRequest(BaseModel):
    """llama.cpp server's /infill and /completion (tools/server/README.md), the fields editors send."""

    model_config = ConfigDict(extra="ignore")  # llama.cpp accepts many more sampling options
    prompt: str | list[int] = ""  # /infill: text after the middle token; /completion: the prompt (or token ids)
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraFile] = []
    n_predict: int = Field(-1, ge=-1)  # -1: the server's limit; 0: only put the prompt into the cache
    n_indent: int = Field(0, ge=0)
    t_max_prompt_ms: float = 0  # <= 0: no limit
    t_max_predict_ms: float = 0
    id_slot: int = -1
    cache_prompt: bool = True
    samplers: list[str] | str | None = None
    temperature: float = Field(0.0, le=5.0)  # <= 0 greedy; greedy by default here (llama.cpp: 0.8)
    top_k: int = Field(40, ge=0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int = -1  # -1: a random seed
    stop: list[str] = []
    # OpenAI's penalties over the ids generated so far (infer/penalties.py); None: the server's default
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    stream: bool = False
    response_fields: list[str] = []
    return_tokens: bool = False
    # lightcoder extensions
    path: str = ""
    mode: Literal["spm", "psm"] = "spm"
    truncate: Literal["none", "syntax", "trim"] = "syntax"


# llama.cpp's sampler names, and the letters of its short form ("edskypmxt")
SAMPLERS = {"penalties", "dry", "top_n_sigma", "top_k", "typ_p", "typical_p", "top_p", "min_p", "xtc",
            "temperature", "infill"}
SAMPLER_LETTERS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typ_p", "p": "top_p",
                   "m": "min_p", "x": "xtc", "t": "temperature", "i": "infill"}


def sampler_settings(req: LlamaCppRequest, names: set[str]) -> tuple[float, int, float]:
    """(temperature, top_k, top_p) to run with, `names` the listed samplers (sampler_names). A setting
    applies only if its sampler is listed; without "temperature" the choice is greedy (llama.cpp would
    draw from what the listed samplers leave; an editor's ghost text wants the most likely one)."""
    temperature = max(req.temperature, 0.0) if "temperature" in names else 0.0
    return (temperature, req.top_k if "top_k" in names else 0, req.top_p if "top_p" in names else 1.0)


def sampler_names(req: LlamaCppRequest) -> set[str]:
    """The samplers the request lists (all of them when it lists none); 400 for unknown names."""
    if req.samplers is None:
        names = SAMPLERS
    elif isinstance(req.samplers, str):
        unknown = sorted(set(req.samplers) - set(SAMPLER_LETTERS))
        if unknown:
            raise ApiError(400, f"samplers {req.samplers!r}: unknown letters {unknown}; use letters of "
                           f"{''.join(SAMPLER_LETTERS)} or a list of names", param="samplers", code="invalid_value")
        names = {SAMPLER_LETTERS[c] for c in req.samplers}
    else:
        unknown = sorted(set(req.samplers) - SAMPLERS)
        if unknown:
            raise ApiError(400, f"samplers: unknown names {unknown}; known: {sorted(SAMPLERS)}", param="samplers",
                           code="invalid_value")
        names = set(req.samplers)
    return names


def check_slot(id_slot: int, n_slots: int) -> None:
    if not -1 <= id_slot < n_slots:
        raise ApiError(400, f"id_slot={id_slot}: unknown slot; this server has {n_slots} slots (0..{n_slots - 1}, "
                       "--parallel), or send -1 for any idle slot", param="id_slot", code="invalid_value")


class OllamaOptions(BaseModel):
    """Ollama's runtime options (Modelfile parameters) that change a completion; others are ignored."""

    model_config = ConfigDict(extra="ignore")  # num_ctx, num_thread, use_mmap, mirostat, ...
    num_predict: int = Field(-1, ge=-2)  # -1: the server's limit (-2: Ollama's "fill the context")
    temperature: float = Field(0.0, ge=0.0, le=5.0)  # greedy by default here (Ollama: 0.8)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = -1  # Ollama's default: random each request (context.request_seed)
    stop: str | list[str] | None = None
    # OpenAI's penalties over the ids generated so far (infer/penalties.py); None: the server's default
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)


class OllamaGenerateRequest(BaseModel):
    """Ollama's POST /api/generate (docs/api.md); `suffix` makes it a fill-in-the-middle request."""

    model_config = ConfigDict(extra="ignore")  # keep_alive, system, template: nothing to do here
    model: str
    prompt: str = ""
    suffix: str = ""
    stream: bool = True
    raw: bool = False
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    images: list[str] | None = None
    format: str | dict | None = None
    context: list[int] | None = None


class OllamaShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = ""
    name: str = ""  # the older spelling


def parse_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {e.start}); send UTF-8 JSON",
                       code="invalid_utf8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int,
                          parse_float=_finite_float) if text.strip() else None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from None
    except ValueError as e:  # NaN / Infinity, or an absurdly long integer (the hooks below)
        raise ApiError(400, f"request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:
        raise ApiError(400, "request body is not valid JSON: arrays or objects nested too deeply; "
                       "send a flat request object", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    bad = find_bad_unicode(data)
    if bad is not None:
        field, at = bad
        raise ApiError(400, f"invalid field {field}: lone UTF-16 surrogate at character {at} (e.g. \\ud800 without "
                       "its pair) is not Unicode text; send valid UTF-8 or paired \\uXXXX escapes", param=field,
                       code="invalid_unicode")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(400, f"invalid field {field}: {err['msg']} (got {err.get('input')!r:.80})", param=field,
                       code="invalid_value") from None


def _reject_constant(name: str):
    # json.loads takes NaN / Infinity / -Infinity by default; they are not JSON, and strict clients
    # (JavaScript's JSON.parse) cannot read them echoed back in generation settings.
    raise ValueError(f"{name} is not a JSON number; send a finite number")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON that Python reads as inf: refused like Infinity itself.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of the range of a double; send a finite number")
    return value


def _bounded_int(digits: str) -> int:
    # Python refuses to convert integers over 4300 digits with a hint for Python programmers; no field
    # here needs more than a 64-bit seed's 20.
    if len(digits.lstrip("-")) > 40:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits is out of range; send at most 40")
    return int(digits)


def check_limit(value: int | float, limit: int | float, param: str, limit_name: str, hint: str = "",
                status: int = 400) -> None:
    if value > limit:
        raise ApiError(status, f"{param}={value} is over the server limit {limit_name}={limit}"
                       f"{'; ' + hint if hint else ''}", param=param, code="limit_exceeded")


# ---------------------------------------------------------------------------------------------
# Validation: pure functions of a parsed request and the limits; each raises ApiError on bad input


def stop_list(stop: str | list[str] | None) -> list[str]:
    """One stop string, a list of them, or none -> a list."""
    return [stop] if isinstance(stop, str) else list(stop or [])


def default_new_tokens(requested: int, limits: Limits, context_room: int) -> int:
    """A negative request (llama.cpp's n_predict / Ollama's num_predict -1) means the server's choice:
    the token limit, at most half of the context."""
    return min(limits.max_tokens_limit, context_room // 2) if requested < 0 else requested


def check_new_tokens(n: int, param: str, limits: Limits, context_room: int) -> None:
    check_limit(n, limits.max_tokens_limit, param, "max_tokens_limit",
                "ask for fewer tokens or start the server with a larger --max-tokens-limit")
    check_limit(n, context_room, param, "the model's context (max_seq_len - 1)")


def check_completion_request(req: CompletionRequest, limits: Limits, context_room: int) -> tuple[str, list[str]]:
    """OpenAI /v1/completions: (the one prompt, the stop strings) after checking every field and limit."""
    if req.echo:
        raise ApiError(400, "echo=true is not supported; send echo=false (the default)", param="echo")
    if req.logprobs:
        raise ApiError(400, "logprobs are not supported; omit the field", param="logprobs")
    if isinstance(req.prompt, list) and len(req.prompt) != 1:
        raise ApiError(400, f"prompt must be one string (got a list of {len(req.prompt)}); send one "
                       "request per prompt", param="prompt")
    prompt = req.prompt[0] if isinstance(req.prompt, list) else req.prompt
    if req.max_tokens < 1:
        raise ApiError(400, f"max_tokens must be >= 1, got {req.max_tokens}", param="max_tokens")
    check_new_tokens(req.max_tokens, "max_tokens", limits, context_room)
    check_limit(req.n, limits.max_n, "n", "max_n")
    check_limit(len(prompt) + len(req.suffix or ""), limits.max_prompt_chars, "prompt+suffix characters",
                "max_prompt_chars", "send less context", status=413)
    check_truncate(req.truncate, req.stream)
    stop = stop_list(req.stop)
    if len(stop) > 4:
        raise ApiError(400, f"at most 4 stop sequences (OpenAI's limit), got {len(stop)}", param="stop")
    return prompt, stop


def check_truncate(truncate: str, stream: bool) -> None:
    """Refuse truncate "trim" on a stream: it cuts the finished completion, which a stream has already sent."""
    if truncate == "trim" and stream:
        raise ApiError(400, 'truncate "trim" needs the whole completion before it is sent; send stream: false, or '
                       'truncate "syntax" (a stream ends at the first complete statement) or "none"', param="truncate")


class LlamaCppSettings(NamedTuple):
    n_predict: int
    temperature: float
    top_k: int
    top_p: float
    frequency_penalty: float | None  # None: the server's default
    presence_penalty: float | None


def check_llamacpp_request(req: LlamaCppRequest, *, fim: bool, n_slots: int, vocab_size: int, limits: Limits,
                           context_room: int) -> LlamaCppSettings:
    """llama.cpp /infill (fim) and /completion: what to run with, after checking every field and limit."""
    check_slot(req.id_slot, n_slots)
    check_truncate(req.truncate, req.stream)
    names = sampler_names(req)
    temperature, top_k, top_p = sampler_settings(req, names)
    n_predict = default_new_tokens(req.n_predict, limits, context_room)
    check_new_tokens(n_predict, "n_predict", limits, context_room)
    check_limit(len(req.input_extra), limits.max_extra_files, "input_extra entries", "max_extra_files")
    if isinstance(req.prompt, list):
        if fim:
            raise ApiError(400, "prompt must be a string for /infill (the text after the middle token)",
                           param="prompt")
        if not req.prompt or any(not 0 <= t < vocab_size for t in req.prompt):
            raise ApiError(400, f"prompt token ids must be a non-empty list of ids in 0..{vocab_size - 1}",
                           param="prompt")
        check_limit(len(req.prompt), context_room - n_predict, "prompt tokens",
                    "the model's context minus n_predict", status=413)
    text = req.prompt if isinstance(req.prompt, str) else ""
    size = len(text) + sum(len(f.text) for f in req.input_extra)
    size += len(req.input_prefix) + len(req.input_suffix) if fim else 0
    check_limit(size, limits.max_prompt_chars, "input characters", "max_prompt_chars", "send less context",
                status=413)
    penalties = "penalties" in names
    return LlamaCppSettings(n_predict, temperature, top_k, top_p, req.frequency_penalty if penalties else 0.0,
                            req.presence_penalty if penalties else 0.0)


def check_ollama_generate(req: OllamaGenerateRequest) -> None:
    """Ollama /api/generate: refuse the fields a code-completion model cannot honour."""
    if req.images:
        raise ApiError(400, "images: this model reads text only; omit the field", param="images")
    if req.format:
        raise ApiError(400, "format (JSON output) is not supported for code completion; omit the field",
                       param="format")
    if req.context:
        raise ApiError(400, "context (a previous reply's token ids) is not supported; send the code in "
                       "prompt and suffix instead", param="context")


def find_bad_unicode(data, path: str = "") -> tuple[str, int] | None:
    """(field path, character index) of the first string (or key) in parsed JSON that is not valid
    Unicode text: JSON can spell a lone surrogate ("\\ud800"), which no tokenizer or UTF-8 encoder takes.
    Walks with an explicit stack, so deep nesting cannot exhaust Python's recursion limit.
    Example: find_bad_unicode({"a": ["x", "\\ud800"]}) -> ("a.1", 0)"""
    stack = [(data, path)]  # (a value or key, its field path), popped in document order
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return where or "body", e.start
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        children = []
        for key, item in items:
            child = f"{where}.{key}" if where else str(key)
            children += [(key, child)] if isinstance(key, str) else []
            children.append((item, child))
        stack.extend(reversed(children))
    return None
