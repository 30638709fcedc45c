"""The app of `lightcoder serve`: OpenAI routes here, llama.cpp's and Ollama's in their modules.

    POST /v1/completions   OpenAI legacy completions: prompt (= prefix), suffix, max_tokens, temperature,
                           top_p, stop, n, seed, stream (SSE); echo must be false
    POST /infill, /completion, GET /slots, /props     llama.cpp server (llamacpp_routes.py)
    POST /api/generate, /api/show, GET /api/tags       Ollama (ollama_routes.py)
    GET  /v1/models, /health, /metrics (Prometheus), / (playground page)

Every route's generation runs on one `BatchScheduler` (infer/scheduler.py): `config.parallel`
requests decode together in one batch (continuous batching); model math lives in lightcoder.infer,
limits and request validation in schemas.py.

Example:
    app = create_app(Completer.load("run/quickstart"), ServerConfig(model_name="lightcoder", parallel=4))
    uvicorn.run(app, port=8000)
"""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from lightcoder.infer.completer import Completer, Completion
from lightcoder.serve.context import ServeContext, ServerConfig, finish_reason
from lightcoder.serve.llamacpp_routes import LlamaCppRoutes
from lightcoder.serve.ollama_routes import OllamaRoutes, error_body
from lightcoder.serve.schemas import (
    ApiError,
    CompletionRequest,
    check_limit,
    parse_body,
)

__all__ = ["ServerConfig", "create_app", "finish_reason"]

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = {"/", "/health", "/metrics"}


def create_app(completer: Completer, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    ctx = ServeContext(completer, config)
    limits, worker, metrics = config.limits, ctx.worker, ctx.metrics

    @asynccontextmanager
    async def lifespan(app):
        yield
        ctx.shutdown()

    app = FastAPI(title="lightcoder", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.ctx, app.state.completer, app.state.worker, app.state.metrics = ctx, completer, worker, metrics
    app.include_router(LlamaCppRoutes(ctx).router)
    app.include_router(OllamaRoutes(ctx).router)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        metrics.request(request.url.path, exc.status)
        body = error_body(exc) if request.url.path.startswith("/api/") else exc.body()  # Ollama's shape there
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError):
        # Input the engine refuses (e.g. a prompt budget that leaves no room): the client's to fix.
        metrics.request(request.url.path, 400)
        return JSONResponse(ApiError(400, str(exc)).body(), status_code=400)

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if config.api_key and request.url.path not in OPEN_PATHS:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
            if not secrets.compare_digest(given.encode(), config.api_key.encode()):
                metrics.request(request.url.path, 401)
                return JSONResponse(ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                             code="invalid_api_key", kind="authentication_error").body(),
                                    status_code=401)
        return await call_next(request)

    context_room = ctx.context_room
    check_model, context_for, run_kwargs, build_ids, sse = (ctx.check_model, ctx.context_for, ctx.run_kwargs,
                                                             ctx.build_ids, ctx.sse)

    # ------------------------------------------------------------------ OpenAI /v1/completions

    @app.post("/v1/completions")
    async def completions(request: Request):
        started = time.perf_counter()
        req: CompletionRequest = parse_body(await request.body(), CompletionRequest)
        check_model(req.model)
        if req.echo:
            raise ApiError(400, "echo=true is not supported; send echo=false (the default)", param="echo")
        if req.logprobs:
            raise ApiError(400, "logprobs are not supported; omit the field", param="logprobs")
        if isinstance(req.prompt, list):
            if len(req.prompt) != 1:
                raise ApiError(400, f"prompt must be one string (got a list of {len(req.prompt)}); send one "
                               "request per prompt", param="prompt")
            prompt = req.prompt[0]
        else:
            prompt = req.prompt
        suffix = req.suffix or ""
        if req.max_tokens < 1:
            raise ApiError(400, f"max_tokens must be >= 1, got {req.max_tokens}", param="max_tokens")
        check_limit(req.max_tokens, limits.max_tokens_limit, "max_tokens", "max_tokens_limit",
                    "ask for fewer tokens or start the server with a larger --max-tokens-limit")
        check_limit(req.max_tokens, context_room, "max_tokens", "the model's context (max_seq_len - 1)")
        check_limit(req.n, limits.max_n, "n", "max_n")
        check_limit(len(prompt) + len(suffix), limits.max_prompt_chars, "prompt+suffix characters",
                    "max_prompt_chars", "send less context", status=413)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stop) > 4:
            raise ApiError(400, f"at most 4 stop sequences (OpenAI's limit), got {len(stop)}", param="stop")
        kwargs = run_kwargs(prefix=prompt, suffix=suffix, path=req.path, max_tokens=req.max_tokens,
                            temperature=req.temperature, top_p=req.top_p, top_k=0, seed=req.seed, stop=stop,
                            mode=req.mode, context=context_for(prompt, req.path, []) if config.workspace_index else [])
        cid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

        def chunk(text: str, index: int, finish: str | None) -> dict:
            return {"id": cid, "object": "text_completion", "created": created, "model": config.model_name,
                    "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}]}

        if req.stream:
            prompt_ids = await build_ids(kwargs)  # bad input fails here, before the 200 and the stream

            def events(cancelled):
                for i in range(req.n):
                    seed = (req.seed or 0) + i
                    gen = completer.stream(**{**kwargs, "seed": seed}, syntax_stop=req.truncate == "syntax",
                                           cancelled=cancelled, prompt_ids=prompt_ids)
                    while True:
                        try:
                            yield chunk(next(gen), i, None)
                        except StopIteration as done:
                            metrics.completion(done.value)
                            yield chunk("", i, finish_reason(done.value))
                            break
            return sse(worker.stream(events), "/v1/completions", started)

        def job(cancelled) -> list[Completion]:
            return [completer.complete(**{**kwargs, "seed": (req.seed or 0) + i}, truncate=req.truncate,
                                       cancelled=cancelled) for i in range(req.n)]

        results = await worker.run(job, request)
        if results is None:
            return JSONResponse({}, status_code=499)
        for r in results:
            metrics.completion(r)
        metrics.request("/v1/completions", 200, time.perf_counter() - started)
        prompt_tokens = results[0].prompt_tokens
        completion_tokens = sum(r.new_tokens for r in results)
        body = {"id": cid, "object": "text_completion", "created": created, "model": config.model_name,
                "choices": [{"text": r.text, "index": i, "logprobs": None, "finish_reason": finish_reason(r)}
                            for i, r in enumerate(results)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
                "lightcoder": {"seconds": round(sum(r.seconds for r in results), 4),
                               "reused_prompt_tokens": results[0].reused_tokens}}
        return JSONResponse(body)

    # ------------------------------------------------------------------ the rest

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": 0,
                                            "owned_by": "lightcoder"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, "queue_depth": worker.depth,
                "slots_idle": len(ctx.scheduler.slots) - ctx.scheduler.busy,
                "slots_processing": ctx.scheduler.busy}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(ctx.scheduler.cache.stats(), worker.depth, ctx.gauges()),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def playground():
        return HTMLResponse((STATIC / "playground.html").read_text(encoding="utf-8"))

    return app

