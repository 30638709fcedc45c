"""Routes of `lightcoder serve` (model math lives in lightcoder.infer; limits in schemas.py).

    POST /v1/completions   OpenAI legacy completions: prompt (= prefix), suffix, max_tokens, temperature,
                           top_p, stop, n, seed, stream (SSE); echo must be false
    POST /infill           llama.cpp server: input_prefix, input_suffix, input_extra [{filename, text}],
                           prompt, n_predict, stop, cache_prompt, stream
    GET  /v1/models, /health, /metrics (Prometheus), / (playground page)

Example:
    app = create_app(Completer.load("run/quickstart"), ServerConfig(model_name="lightcoder"))
    uvicorn.run(app, port=8000)
"""

from __future__ import annotations

import json
import secrets
from contextlib import asynccontextmanager
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lightcoder.infer.completer import Completer, Completion
from lightcoder.infer.retrieval import ChunkIndex, query_text
from lightcoder.serve.metrics import Metrics
from lightcoder.serve.schemas import ApiError, CompletionRequest, InfillRequest, Limits, check_limit, parse_body
from lightcoder.serve.worker import EngineWorker

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = {"/", "/health", "/metrics"}


@dataclass(kw_only=True)
class ServerConfig:
    model_name: str = "lightcoder"
    api_key: str | None = None  # when set, requests need "Authorization: Bearer KEY"
    limits: Limits = field(default_factory=Limits)
    workspace_index: ChunkIndex | None = None  # cross-file context from a directory (--workspace)
    context_chunks: int = 3  # BM25 top-k, as aiXcoder's CrossCodeEval setup


def create_app(completer: Completer, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    limits = config.limits
    worker = EngineWorker(max_queue=limits.max_queue)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.shutdown()

    app = FastAPI(title="lightcoder", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.completer, app.state.worker, app.state.metrics = completer, worker, metrics

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        metrics.request(request.url.path, exc.status)
        return JSONResponse(exc.body(), status_code=exc.status)

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

    context_room = completer.model_cfg.max_seq_len - 1  # at least one prompt token must fit

    def check_model(name: str | None) -> None:
        if name and name != config.model_name:
            raise ApiError(404, f"model {name!r} does not exist; this server serves {config.model_name!r} "
                           "(GET /v1/models)", param="model", code="model_not_found")

    def context_for(prefix: str, path: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        query = query_text(prefix)
        hits: list[tuple[str, str]] = []
        if extra:
            hits += ChunkIndex.from_files(extra).search(query, config.context_chunks, exclude_path=path or None)
        if config.workspace_index is not None and len(hits) < config.context_chunks:
            hits += config.workspace_index.search(query, config.context_chunks - len(hits), exclude_path=path or None)
        return hits

    def run_kwargs(*, prefix, suffix, path, max_tokens, temperature, top_p, top_k, seed, stop, mode, context):
        return dict(prefix=prefix, suffix=suffix, path=path, max_new_tokens=max_tokens, temperature=temperature,
                    top_p=top_p, top_k=top_k, seed=seed or 0, stop=stop, mode=mode, context=context,
                    max_seconds=limits.max_seconds)

    async def build_ids(kwargs: dict) -> list[int]:
        """The prompt ids, tokenized on a thread-pool thread (not the event loop, not the engine)."""
        return await run_in_threadpool(
            completer.build, kwargs["prefix"], kwargs["suffix"], path=kwargs["path"], mode=kwargs["mode"],
            max_new_tokens=kwargs["max_new_tokens"], context=kwargs["context"])

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

    # ------------------------------------------------------------------ llama.cpp /infill

    @app.post("/infill")
    async def infill(request: Request):
        started = time.perf_counter()
        req: InfillRequest = parse_body(await request.body(), InfillRequest)
        n_predict = min(limits.max_tokens_limit, context_room // 2) if req.n_predict < 0 else req.n_predict
        if n_predict == 0:
            raise ApiError(400, "n_predict must be > 0 (or -1 for the server's limit)", param="n_predict")
        check_limit(n_predict, limits.max_tokens_limit, "n_predict", "max_tokens_limit")
        check_limit(n_predict, context_room, "n_predict", "the model's context (max_seq_len - 1)")
        check_limit(len(req.input_extra), limits.max_extra_files, "input_extra entries", "max_extra_files")
        prefix = req.input_prefix + req.prompt
        size = len(prefix) + len(req.input_suffix) + sum(len(f.text) for f in req.input_extra)
        check_limit(size, limits.max_prompt_chars, "input characters", "max_prompt_chars", "send less context",
                    status=413)
        extra = [(f.filename, f.text) for f in req.input_extra if f.text]
        context = context_for(prefix, req.path, extra) if (extra or config.workspace_index) else []
        kwargs = run_kwargs(prefix=prefix, suffix=req.input_suffix, path=req.path, max_tokens=n_predict,
                            temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, seed=req.seed,
                            stop=req.stop, mode=req.mode, context=context)

        def final(r: Completion, content: str) -> dict:
            return {"content": content, "stop": True, "model": config.model_name,
                    "tokens_predicted": r.new_tokens, "tokens_evaluated": r.prompt_tokens,
                    "tokens_cached": r.reused_tokens, "stopped_eos": r.stop_reason == "stop",
                    "stopped_limit": r.stop_reason == "length", "stop_reason": r.stop_reason,
                    "timings": {"predicted_ms": r.seconds * 1000, "prompt_n": r.prompt_tokens - r.reused_tokens}}

        if req.stream:
            prompt_ids = await build_ids(kwargs)

            def events(cancelled):
                gen = completer.stream(**kwargs, syntax_stop=req.truncate == "syntax", cancelled=cancelled,
                                       prompt_ids=prompt_ids)
                while True:
                    try:
                        yield {"content": next(gen), "stop": False}
                    except StopIteration as done:
                        metrics.completion(done.value)
                        yield final(done.value, "")
                        return
            return sse(worker.stream(events), "/infill", started, done_marker=False)

        result = await worker.run(lambda cancelled: completer.complete(**kwargs, truncate=req.truncate,
                                                                       cancelled=cancelled), request)
        if result is None:
            return JSONResponse({}, status_code=499)
        metrics.completion(result)
        metrics.request("/infill", 200, time.perf_counter() - started)
        return JSONResponse(final(result, result.text))

    # ------------------------------------------------------------------ the rest

    def sse(items, endpoint: str, started: float, done_marker: bool = True) -> StreamingResponse:
        async def body():
            try:
                async for item in items:
                    yield f"data: {json.dumps(item)}\n\n"
                if done_marker:
                    yield "data: [DONE]\n\n"
                metrics.request(endpoint, 200, time.perf_counter() - started)
            finally:
                await items.aclose()  # a disconnected client cancels the job
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": 0,
                                            "owned_by": "lightcoder"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, "queue_depth": worker.depth}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(completer.engine.cache.stats(), worker.depth),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def playground():
        return HTMLResponse((STATIC / "playground.html").read_text(encoding="utf-8"))

    return app


def finish_reason(result: Completion) -> str:
    """OpenAI's vocabulary: "length" when cut by a token or time budget, else "stop"."""
    return "length" if result.stop_reason in ("length", "max_seq_len", "time") else "stop"
