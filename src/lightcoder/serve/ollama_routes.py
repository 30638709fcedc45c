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
import time
from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightcoder import __version__
from lightcoder.infer.completer import Completion
from lightcoder.serve.context import ServeContext, client_gone, finish_reason
from lightcoder.serve.schemas import (
    ApiError,
    OllamaGenerateRequest,
    OllamaShowRequest,
    check_limit,
    check_new_tokens,
    check_ollama_generate,
    default_new_tokens,
    parse_body,
    stop_list,
)
from lightcoder.serve.streaming import ndjson_response

ENDPOINT = "/api/generate"


def error_body(exc: ApiError) -> dict:
    return {"error": exc.message}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


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
        check_ollama_generate(req)
        if not req.prompt and not req.suffix:  # Ollama's "load the model" request
            return JSONResponse({"model": self.tag, "created_at": now_iso(), "response": "", "done": True,
                                 "done_reason": "load"})
        kwargs = await run_in_threadpool(self._kwargs, req)  # cross-file context search: off the event loop
        if req.stream:
            await ctx.tokenize_first(kwargs)
            items = ctx.stream([kwargs], piece=lambda i, text: self._piece(text),
                               last=lambda i, result: self._last(result, started))
            return ndjson_response(items, ctx.metrics, ENDPOINT, started)
        results = await ctx.complete(request, [{**kwargs, "truncate": "none"}], ENDPOINT, started)
        if results is None:
            return client_gone()
        return JSONResponse({**self._last(results[0], started), "response": results[0].text})

    def _kwargs(self, req: OllamaGenerateRequest) -> dict:
        """Completer keywords: options checked against the limits, cross-file context from --workspace."""
        ctx, o = self.ctx, req.options
        n_predict = default_new_tokens(o.num_predict, ctx.limits, ctx.context_room)
        check_new_tokens(n_predict, "options.num_predict", ctx.limits, ctx.context_room)
        check_limit(len(req.prompt) + len(req.suffix), ctx.limits.max_prompt_chars, "prompt+suffix characters",
                    "max_prompt_chars", "send less context", status=413)
        return ctx.run_kwargs(prefix=req.prompt, suffix=req.suffix, path="", max_tokens=n_predict,
                              temperature=o.temperature, top_p=o.top_p, top_k=o.top_k, seed=o.seed,
                              stop=stop_list(o.stop), mode="spm", context=ctx.context_for(req.prompt, "", []),
                              frequency_penalty=o.frequency_penalty, presence_penalty=o.presence_penalty)

    def _piece(self, text: str) -> dict:
        return {"model": self.tag, "created_at": now_iso(), "response": text, "done": False}

    def _last(self, result: Completion, started: float) -> dict:
        ns = 1_000_000_000
        return {"model": self.tag, "created_at": now_iso(), "response": "", "done": True,
                "done_reason": finish_reason(result), "context": [],
                "total_duration": int((time.perf_counter() - started) * ns), "load_duration": 0,
                "prompt_eval_count": result.prompt_tokens, "prompt_eval_duration": int(result.prompt_seconds * ns),
                "eval_count": result.new_tokens, "eval_duration": int(result.predicted_seconds * ns)}

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
