"""Typed requests and the server's limits; bad input becomes an `ApiError` naming the field or limit.

Bodies are parsed here, not by FastAPI, so every failure (invalid UTF-8, malformed JSON, wrong types,
a limit) gets a 4xx with an OpenAI-style error object that says what to fix:

    {"error": {"message": "max_tokens=100000 is over the server limit max_tokens_limit=512; ...",
               "type": "invalid_request_error", "param": "max_tokens", "code": "limit_exceeded"}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

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
    # lightcoder extensions
    path: str = ""  # file path: aiXcoder's header lines and the language for syntax truncation
    mode: Literal["spm", "psm"] = "spm"
    truncate: Literal["none", "syntax"] = "syntax"


class ExtraFile(BaseModel):
    filename: str = ""
    text: str = ""


class InfillRequest(BaseModel):
    """llama.cpp server /infill."""

    model_config = ConfigDict(extra="ignore")
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraFile] = []
    prompt: str = ""  # text after the prefix (llama.cpp appends it at the cursor)
    n_predict: int = -1
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    seed: int | None = None
    stop: list[str] = []
    stream: bool = False
    cache_prompt: bool = True  # always on here; accepted for compatibility
    path: str = ""
    mode: Literal["spm", "psm"] = "spm"
    truncate: Literal["none", "syntax"] = "syntax"


def parse_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {e.start}); send UTF-8 JSON",
                       code="invalid_utf8") from None
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(400, f"invalid field {field}: {err['msg']} (got {err.get('input')!r:.80})", param=field,
                       code="invalid_value") from None


def check_limit(value: int | float, limit: int | float, param: str, limit_name: str, hint: str = "",
                status: int = 400) -> None:
    if value > limit:
        raise ApiError(status, f"{param}={value} is over the server limit {limit_name}={limit}"
                       f"{'; ' + hint if hint else ''}", param=param, code="limit_exceeded")
