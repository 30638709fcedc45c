"""Ollama API compatibility: local fill-in-the-middle as Continue, twinny and Neovim plugins ask for it.

    POST /api/generate  model, prompt (code before the cursor), suffix (after it), stream (default
                        true: NDJSON, one object per line, the last with done: true and the counts),
                        raw, options {num_predict, temperature, top_k, top_p, seed, stop}
    GET  /api/tags      the one model, as "NAME:latest"
    POST /api/show      details, parameters and a template with .Suffix (how Continue detects FIM)
    GET  /api/version

Errors are Ollama's shape, {"error": "message"}, with a 4xx status. Durations are nanoseconds.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lightcoder import __version__
from lightcoder.infer.completer import Completion
from lightcoder.serve.context import ServeContext
from lightcoder.serve.schemas import (
    ApiError,
    OllamaGenerateRequest,
    OllamaShowRequest,
    check_limit,
    parse_body,
)


def error_body(exc: ApiError) -> dict:
    return {"error": exc.message}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def done_reason(result: Completion) -> str:
    return "length" if result.stop_reason in ("length", "max_seq_len", "time") else "stop"


class OllamaRoutes:
    def __init__(self, ctx: ServeContext):
        self.ctx = ctx
        name = ctx.config.model_name
        self.tag = name if ":" in name else f"{name}:latest"
        self.router = APIRouter()
        self.router.add_api_route("/api/generate", self.generate, methods=["POST"])
        self.router.add_api_route("/api/tags", self.tags, methods=["GET"])
        self.router.add_api_route("/api/show", self.show, methods=["POST"])
        self.router.add_api_route("/api/version", self.version, methods=["GET"])

    def _check_model(self, name: str) -> None:
        if name not in (self.ctx.config.model_name, self.tag):
            raise ApiError(404, f"model '{name}' not found; this server serves '{self.tag}' (GET /api/tags)",
                           param="model", code="model_not_found")

    def _template(self) -> str:
        """The model's FIM layout as an Ollama (Go) template; Continue enables FIM when it sees .Suffix."""
        completer = self.ctx.completer
        if completer.template.name == "aixcoder":
            from lightcoder.infer.prompts import layout

            pieces = layout("", "{{ .Prompt }}", "{{ .Suffix }}", "spm", fim=True)
        else:
            pieces = completer.template.fim_pieces("{{ .Prompt }}", "{{ .Suffix }}")
        return "{{- if .Suffix }}" + "".join(pieces) + "{{- else }}{{ .Prompt }}{{- end }}"

    def _details(self) -> dict:
        cfg = self.ctx.completer.model_cfg
        n_params = sum(p.numel() for p in self.ctx.completer.model.parameters())
        dtype = str(next(self.ctx.completer.model.parameters()).dtype).removeprefix("torch.").upper()
        size = f"{n_params / 1e9:.1f}B" if n_params >= 1e9 else f"{n_params / 1e6:.1f}M"
        return {"parent_model": "", "format": "safetensors", "family": "llama", "families": ["llama"],
                "parameter_size": size, "quantization_level": dtype, "context_length": cfg.max_seq_len}

    # ------------------------------------------------------------------ /api/generate

    async def generate(self, request: Request):
        ctx, started = self.ctx, time.perf_counter()
        req: OllamaGenerateRequest = parse_body(await request.body(), OllamaGenerateRequest)
        self._check_model(req.model)
        if req.images:
            raise ApiError(400, "images: this model reads text only; omit the field", param="images")
        if req.format:
            raise ApiError(400, "format (JSON output) is not supported for code completion; omit the field",
                           param="format")
        if req.context:
            raise ApiError(400, "context (a previous reply's token ids) is not supported; send the code in "
                           "prompt and suffix instead", param="context")
        if not req.prompt and not req.suffix:  # Ollama's "load the model" request
            return JSONResponse({"model": self.tag, "created_at": now_iso(), "response": "", "done": True,
                                 "done_reason": "load"})
        o, limits = req.options, ctx.limits
        n_predict = min(limits.max_tokens_limit, ctx.context_room // 2) if o.num_predict < 0 else o.num_predict
        check_limit(n_predict, limits.max_tokens_limit, "options.num_predict", "max_tokens_limit",
                    "ask for fewer tokens or start the server with a larger --max-tokens-limit")
        check_limit(n_predict, ctx.context_room, "options.num_predict", "the model's context (max_seq_len - 1)")
        check_limit(len(req.prompt) + len(req.suffix), limits.max_prompt_chars, "prompt+suffix characters",
                    "max_prompt_chars", "send less context", status=413)
        stop = [o.stop] if isinstance(o.stop, str) else list(o.stop or [])
        kwargs = ctx.run_kwargs(prefix=req.prompt, suffix=req.suffix, path="", max_tokens=n_predict,
                                temperature=o.temperature, top_p=o.top_p, top_k=o.top_k, seed=o.seed, stop=stop,
                                mode="spm", context=ctx.context_for(req.prompt, "", []))
        if req.stream:
            kwargs["prompt_ids"] = await ctx.build_ids(kwargs)  # bad input fails here, before the 200
            return self._ndjson(kwargs, started)
        result = await ctx.worker.run(lambda cancelled: ctx.completer.complete(**kwargs, truncate="none",
                                                                               cancelled=cancelled), request)
        if result is None:
            return JSONResponse({}, status_code=499)
        ctx.metrics.completion(result)
        ctx.metrics.request("/api/generate", 200, time.perf_counter() - started)
        return JSONResponse({**self._last(result, started), "response": result.text})

    def _last(self, result: Completion, started: float) -> dict:
        ns = 1_000_000_000
        return {"model": self.tag, "created_at": now_iso(), "response": "", "done": True,
                "done_reason": done_reason(result), "context": [],
                "total_duration": int((time.perf_counter() - started) * ns), "load_duration": 0,
                "prompt_eval_count": result.prompt_tokens, "prompt_eval_duration": int(result.prompt_seconds * ns),
                "eval_count": result.new_tokens, "eval_duration": int(result.predicted_seconds * ns)}

    def _ndjson(self, kwargs: dict, started: float) -> StreamingResponse:
        ctx = self.ctx

        def events(cancelled):
            gen = ctx.completer.stream(**kwargs, cancelled=cancelled)
            while True:
                try:
                    yield {"model": self.tag, "created_at": now_iso(), "response": next(gen), "done": False}
                except StopIteration as done:
                    ctx.metrics.completion(done.value)
                    yield self._last(done.value, started)
                    return

        items = ctx.worker.stream(events)

        async def body():
            try:
                async for item in items:
                    yield json.dumps(item) + "\n"
                ctx.metrics.request("/api/generate", 200, time.perf_counter() - started)
            finally:
                await items.aclose()  # a disconnected client cancels the job
        return StreamingResponse(body(), media_type="application/x-ndjson")

    # ------------------------------------------------------------------ the model

    async def tags(self):
        n_bytes = sum(p.numel() * p.element_size() for p in self.ctx.completer.model.parameters())
        digest = hashlib.sha256(f"{self.ctx.config.model_path}:{n_bytes}".encode()).hexdigest()
        return {"models": [{"name": self.tag, "model": self.tag, "modified_at": now_iso(), "size": n_bytes,
                            "digest": digest, "details": self._details()}]}

    async def show(self, request: Request):
        req: OllamaShowRequest = parse_body(await request.body(), OllamaShowRequest)
        name = req.model or req.name
        if not name:
            raise ApiError(400, "model: the model name is required (GET /api/tags lists it)", param="model")
        self._check_model(name)
        cfg = self.ctx.completer.model_cfg
        params = f"num_ctx {cfg.max_seq_len}\ntemperature 0"
        template = self._template()
        return {"modelfile": f"FROM {self.ctx.config.model_path or self.tag}\nTEMPLATE \"\"\"{template}\"\"\"\n"
                             + "".join(f"PARAMETER {line}\n" for line in params.split("\n")),
                "parameters": params, "template": template, "details": self._details(),
                "model_info": {"general.architecture": "llama", "llama.context_length": cfg.max_seq_len,
                               "llama.embedding_length": cfg.dim, "llama.block_count": cfg.n_layers},
                "capabilities": ["completion", "insert"], "modified_at": now_iso()}

    async def version(self):
        return {"version": __version__}
