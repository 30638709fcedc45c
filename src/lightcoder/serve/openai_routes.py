"""OpenAI compatibility: the legacy completions API, which editors and the openai client speak.

    POST /v1/completions  prompt (= prefix), suffix, max_tokens, temperature, top_p, stop, n, seed,
                          stream (SSE, ends with `data: [DONE]`); echo must be false; extensions:
                          path, mode (spm/psm), truncate (none/syntax/trim)
    GET  /v1/models       the one model

Field names and reply shapes follow https://platform.openai.com/docs/api-reference/completions.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightcoder.infer.completer import Completion
from lightcoder.serve.context import ServeContext, client_gone, finish_reason
from lightcoder.serve.schemas import (
    ApiError,
    CompletionRequest,
    check_completion_request,
    parse_body,
)
from lightcoder.serve.streaming import sse_response

ENDPOINT = "/v1/completions"


@dataclass
class CompletionReply:
    """What every chunk and the body of one /v1/completions reply share: id, creation time, model."""

    model: str
    id: str = field(default_factory=lambda: f"cmpl-{secrets.token_hex(12)}")
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, text: str, index: int, finish: str | None) -> dict:
        """One streamed event: new text of choice `index` (finish: None until its last event)."""
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}]}

    def body(self, results: list[Completion]) -> dict:
        """The whole reply: one choice per completion, token usage, and lightcoder's timings."""
        prompt_tokens = results[0].prompt_tokens
        completion_tokens = sum(r.new_tokens for r in results)
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": r.text, "index": i, "logprobs": None, "finish_reason": finish_reason(r)}
                            for i, r in enumerate(results)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
                "lightcoder": {"seconds": round(sum(r.seconds for r in results), 4),
                               "reused_prompt_tokens": results[0].reused_tokens}}


class OpenAIRoutes:
    def __init__(self, ctx: ServeContext):
        self.ctx = ctx
        self.router = APIRouter()
        self.router.add_api_route(ENDPOINT, self.completions, methods=["POST"])
        self.router.add_api_route("/v1/models", self.models, methods=["GET"])

    async def completions(self, request: Request):
        started = time.perf_counter()
        req: CompletionRequest = parse_body(await request.body(), CompletionRequest)
        self._check_model(req.model)
        kwargs = await run_in_threadpool(self._kwargs, req)  # cross-file context search: off the event loop
        reply = CompletionReply(self.ctx.config.model_name)
        if req.stream:
            return await self._stream(req, kwargs, reply, started)
        runs = [{**run, "truncate": req.truncate} for run in self._runs(req, kwargs)]
        results = await self.ctx.complete(request, runs, ENDPOINT, started)
        return client_gone() if results is None else JSONResponse(reply.body(results))

    async def models(self):
        return {"object": "list", "data": [{"id": self.ctx.config.model_name, "object": "model", "created": 0,
                                            "owned_by": "lightcoder"}]}

    # ------------------------------------------------------------------ one request

    def _check_model(self, name: str | None) -> None:
        served = self.ctx.config.model_name
        if name and name != served:
            raise ApiError(404, f"model {name!r} does not exist; this server serves {served!r} (GET /v1/models)",
                           param="model", code="model_not_found")

    def _kwargs(self, req: CompletionRequest) -> dict:
        """Completer keywords of the request (4xx for bad fields); cross-file context from --workspace."""
        ctx = self.ctx
        prompt, stop = check_completion_request(req, ctx.limits, ctx.context_room)
        context = ctx.context_for(prompt, req.path, []) if ctx.config.workspace_index else []
        return ctx.run_kwargs(prefix=prompt, suffix=req.suffix or "", path=req.path, max_tokens=req.max_tokens,
                              temperature=req.temperature, top_p=req.top_p, top_k=0, seed=req.seed, stop=stop,
                              mode=req.mode, context=context, frequency_penalty=req.frequency_penalty,
                              presence_penalty=req.presence_penalty,
                              fim=True if req.suffix is not None else None)  # sent, even empty: infilling

    @staticmethod
    def _runs(req: CompletionRequest, kwargs: dict) -> list[dict]:
        """The n completions asked for: seeds seed, seed + 1, ... (from the request's seed, or the random one
        run_kwargs drew when it sent none)."""
        return [{**kwargs, "seed": kwargs["seed"] + i} for i in range(req.n)]

    async def _stream(self, req: CompletionRequest, kwargs: dict, reply: CompletionReply, started: float):
        await self.ctx.tokenize_first(kwargs)
        runs = [{**run, "syntax_stop": req.truncate == "syntax"} for run in self._runs(req, kwargs)]
        items = self.ctx.stream(runs, piece=lambda i, text: reply.chunk(text, i, None),
                                last=lambda i, result: reply.chunk("", i, finish_reason(result)))
        return sse_response(items, self.ctx.metrics, ENDPOINT, started)
