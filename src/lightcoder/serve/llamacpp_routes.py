"""llama.cpp server compatibility: what editor plugins (llama.vim, llama.vscode) send and read.

    POST /infill      input_prefix, input_suffix, input_extra [{filename, text}], prompt (after the
                      middle token), n_predict (0: only fill the cache), n_indent, t_max_prompt_ms,
                      t_max_predict_ms, id_slot, cache_prompt, samplers, temperature, top_k, top_p,
                      seed, stop, stream (SSE), response_fields ("timings/prompt_n": flattened)
    POST /completion  the same options; prompt is the whole text (or a list of token ids)
    GET  /slots       each slot's state (?fail_on_no_slot=1: 503 when none is idle)
    GET  /props       total_slots, default_generation_settings, model_path

Field names and reply shapes follow llama.cpp's tools/server/README.md.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightcoder import __version__
from lightcoder.infer.completer import Completion
from lightcoder.serve.context import ServeContext, client_gone, hit_limit, request_seed
from lightcoder.serve.schemas import (
    ApiError,
    LlamaCppRequest,
    LlamaCppSettings,
    check_llamacpp_request,
    parse_body,
)
from lightcoder.serve.streaming import sse_response


def select_fields(body: dict, fields: list[str]) -> dict:
    """llama.cpp's response_fields: keep only these; "a/b" takes body["a"]["b"] to the top level under
    the key "a/b"; missing fields are left out. No fields: the whole body.
    Example: select_fields({"content": "x", "timings": {"prompt_n": 3}}, ["timings/prompt_n"]) -> {"timings/prompt_n": 3}"""
    if not fields:
        return body
    out = {}
    for name in fields:
        value, found = body, True
        for part in name.split("/"):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                found = False
                break
        if found and name:
            out[name] = value
    return out


def timings(result: Completion) -> dict:
    """llama.cpp's timings object: prompt processing and generation, counts, ms and rates."""
    prompt_n, prompt_ms = result.prompt_tokens - result.reused_tokens, result.prompt_seconds * 1000
    predicted_n, predicted_ms = result.new_tokens, result.predicted_seconds * 1000

    def per_token(ms, n):
        return ms / n if n else 0.0

    def per_second(ms, n):
        return 1000.0 * n / ms if ms > 0 else 0.0
    return {"cache_n": result.reused_tokens, "prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_token_ms": per_token(prompt_ms, prompt_n), "prompt_per_second": per_second(prompt_ms, prompt_n),
            "predicted_n": predicted_n, "predicted_ms": predicted_ms,
            "predicted_per_token_ms": per_token(predicted_ms, predicted_n),
            "predicted_per_second": per_second(predicted_ms, predicted_n)}


def seconds(ms: float) -> float | None:
    """llama.cpp's time limits: milliseconds, <= 0 for none."""
    return ms / 1000 if ms > 0 else None


def stop_type(result: Completion) -> str:
    """llama.cpp's stop_type: "eos", "limit" (n_predict, context, time or n_indent, as llama.cpp), "word" (a stop
    string), "none"."""
    if hit_limit(result) or result.stop_reason == "indent":
        return "limit"
    if result.stop_reason == "cancelled":
        return "none"
    return "word" if result.stop_word else "eos"


class LlamaCppRoutes:
    def __init__(self, ctx: ServeContext):
        self.ctx = ctx
        self.router = APIRouter()
        self.router.add_api_route("/infill", self.infill, methods=["POST"])
        self.router.add_api_route("/completion", self.completion, methods=["POST"])
        self.router.add_api_route("/slots", self.slots, methods=["GET"])
        self.router.add_api_route("/props", self.props, methods=["GET"])

    async def infill(self, request: Request):
        return await self._run(request, "/infill", fim=True)

    async def completion(self, request: Request):
        return await self._run(request, "/completion", fim=False)

    # ------------------------------------------------------------------ one request

    def _settings(self, req: LlamaCppRequest, fim: bool) -> tuple[dict, dict]:
        """(Completer keyword arguments, the generation_settings echoed back); 4xx for bad fields."""
        ctx = self.ctx
        vocab = ctx.completer.engine.vocab_size or ctx.completer.model_cfg.vocab_size
        run = check_llamacpp_request(req, fim=fim, n_slots=len(ctx.scheduler.slots), vocab_size=vocab,
                                     limits=ctx.limits, context_room=ctx.context_room)
        seed = request_seed(req.seed)
        return self._kwargs(req, fim, run, seed), self._generation_settings(req, run, seed)

    def _kwargs(self, req: LlamaCppRequest, fim: bool, run: LlamaCppSettings, seed: int) -> dict:
        """/infill: prefix, middle (the prompt) and suffix, with context from input_extra; /completion: the
        prompt (or its ids) alone."""
        ctx = self.ctx
        text = req.prompt if isinstance(req.prompt, str) else ""
        prefix, middle, suffix = (req.input_prefix, text, req.input_suffix) if fim else (text, "", "")
        extra = [(f.filename, f.text) for f in req.input_extra if f.text]
        kwargs = ctx.run_kwargs(
            prefix=prefix, suffix=suffix, path=req.path, max_tokens=run.n_predict, temperature=run.temperature,
            top_p=run.top_p, top_k=run.top_k, seed=seed, stop=req.stop, mode=req.mode,
            context=ctx.context_for(prefix + middle, req.path, extra) if fim else [], middle=middle,
            id_slot=req.id_slot, cache_prompt=req.cache_prompt, max_prompt_seconds=seconds(req.t_max_prompt_ms),
            frequency_penalty=run.frequency_penalty, presence_penalty=run.presence_penalty,
            fim=True if fim else None)  # /infill at the end of a file is still infilling
        kwargs.update(min_indent=req.n_indent, prompt_ids=None if isinstance(req.prompt, str) else list(req.prompt),
                      predict_seconds_after_newline=seconds(req.t_max_predict_ms))
        return kwargs

    def _generation_settings(self, req: LlamaCppRequest, run: LlamaCppSettings, seed: int) -> dict:
        frequency, presence = self.ctx.penalties(run.frequency_penalty, run.presence_penalty)
        return {"n_predict": run.n_predict, "seed": seed, "temperature": run.temperature, "top_k": run.top_k,
                "top_p": run.top_p, "frequency_penalty": frequency, "presence_penalty": presence,
                "stop": req.stop, "n_indent": req.n_indent,
                "t_max_prompt_ms": req.t_max_prompt_ms, "t_max_predict_ms": req.t_max_predict_ms,
                "cache_prompt": req.cache_prompt,
                "samplers": ["top_k", "top_p", "temperature"] if req.samplers is None else req.samplers,
                "n_ctx": self.ctx.completer.model_cfg.max_seq_len, "model": self.ctx.config.model_name}

    def _final(self, result: Completion, content: str, settings: dict) -> dict:
        return {"index": 0, "content": content, "tokens": [], "id_slot": result.slot, "stop": True,
                "model": self.ctx.config.model_name, "tokens_predicted": result.new_tokens,
                "tokens_evaluated": result.prompt_tokens, "generation_settings": settings, "prompt": "",
                "has_new_line": "\n" in content, "truncated": result.stop_reason == "max_seq_len",
                "stop_type": stop_type(result), "stopping_word": result.stop_word,
                "tokens_cached": result.reused_tokens, "timings": timings(result),
                # earlier llama.cpp names, and ours
                "stopped_eos": stop_type(result) == "eos", "stopped_limit": stop_type(result) == "limit",
                "stopped_word": bool(result.stop_word), "stop_reason": result.stop_reason}

    async def _run(self, request: Request, endpoint: str, *, fim: bool):
        ctx, started = self.ctx, time.perf_counter()
        req: LlamaCppRequest = parse_body(await request.body(), LlamaCppRequest)
        kwargs, settings = await run_in_threadpool(self._settings, req, fim)  # input_extra search: off the loop
        if req.stream:
            return await self._stream(req, kwargs, settings, endpoint, started)
        results = await ctx.complete(request, [{**kwargs, "truncate": req.truncate}], endpoint, started)
        if results is None:
            return client_gone()
        return JSONResponse(select_fields(self._final(results[0], results[0].text, settings), req.response_fields))

    async def _stream(self, req: LlamaCppRequest, kwargs: dict, settings: dict, endpoint: str, started: float):
        if kwargs["prompt_ids"] is None:
            await self.ctx.tokenize_first(kwargs)
        run = {**kwargs, "syntax_stop": req.truncate == "syntax"}
        fields = req.response_fields
        items = self.ctx.stream([run], piece=lambda i, text: {"index": 0, "content": text, "tokens": [],
                                                              "stop": False, "id_slot": -1},
                                last=lambda i, result: select_fields(self._final(result, "", settings), fields))
        return sse_response(items, self.ctx.metrics, endpoint, started, done_marker=False)

    # ------------------------------------------------------------------ server state

    def _slot_json(self, slot) -> dict:
        req = slot.req
        p = req.params if req is not None else None
        params = {"n_predict": p.max_new_tokens if p else -1, "seed": p.seed if p else 0,
                  "temperature": p.temperature if p else 0.0, "top_k": p.top_k if p else 0,
                  "top_p": p.top_p if p else 1.0, "frequency_penalty": p.frequency_penalty if p else 0.0,
                  "presence_penalty": p.presence_penalty if p else 0.0, "stop": [],
                  "samplers": ["top_k", "top_p", "temperature"],
                  "cache_prompt": True}
        return {"id": slot.id, "id_task": req.task_id if req else -1,
                "n_ctx": self.ctx.completer.model_cfg.max_seq_len,
                "speculative": self.ctx.scheduler.max_draft_tokens > 0, "is_processing": req is not None,
                "params": params, "prompt": "",
                "next_token": {"has_next_token": req is not None, "has_new_line": False,
                               "n_remain": p.max_new_tokens - slot.produced if p else -1,
                               "n_decoded": slot.produced if req else 0, "stopping_word": ""}}

    async def slots(self, request: Request):
        slots = self.ctx.scheduler.slots
        if request.query_params.get("fail_on_no_slot") in ("1", "true") and all(s.req is not None for s in slots):
            raise ApiError(503, "no slot available: every slot is processing a request; retry later",
                           code="unavailable", kind="unavailable_error")
        return [self._slot_json(s) for s in slots]

    async def props(self):
        default = self._slot_json(type(self.ctx.scheduler.slots[0])(0))
        default.update(id=0, is_processing=False)
        return {"default_generation_settings": default, "total_slots": len(self.ctx.scheduler.slots),
                "model_path": self.ctx.config.model_path or self.ctx.config.model_name, "chat_template": "",
                "chat_template_caps": {}, "modalities": {"vision": False, "audio": False},
                "build_info": f"lightcoder {__version__}", "is_sleeping": False}
