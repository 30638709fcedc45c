"""The app of `lightcoder serve`: each API's routes in its module, the server's own routes here.

    POST /v1/completions, GET /v1/models              OpenAI (openai_routes.py)
    POST /infill, /completion, GET /slots, /props     llama.cpp server (llamacpp_routes.py)
    POST /api/generate, /api/show, GET /api/tags       Ollama (ollama_routes.py)
    GET  /health, /metrics (Prometheus), / (playground page)

Every route's generation runs on one `BatchScheduler` (infer/scheduler.py): `config.parallel`
requests decode together in one batch (continuous batching); model math lives in lightcoder.infer,
limits and request validation in schemas.py, streaming in streaming.py.

Example:
    app = create_app(Completer.load("run/quickstart"), ServerConfig(model_name="lightcoder", parallel=4))
    uvicorn.run(app, port=8000)
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from lightcoder.infer.completer import Completer
from lightcoder.serve.context import ServeContext, ServerConfig, finish_reason
from lightcoder.serve.llamacpp_routes import LlamaCppRoutes
from lightcoder.serve.ollama_routes import OllamaRoutes, error_body
from lightcoder.serve.openai_routes import OpenAIRoutes
from lightcoder.serve.schemas import ApiError

__all__ = ["ServerConfig", "create_app", "finish_reason"]

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = {"/", "/health", "/metrics"}  # reachable without the API key


def create_app(completer: Completer, config: ServerConfig | None = None) -> FastAPI:
    ctx = ServeContext(completer, config or ServerConfig())
    app = FastAPI(title="lightcoder", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.ctx = ctx
    for routes in (LlamaCppRoutes(ctx), OllamaRoutes(ctx), OpenAIRoutes(ctx), ServerRoutes(ctx)):
        app.include_router(routes.router)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ValueError, value_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.middleware("http")(check_api_key)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    app.state.ctx.shutdown()


def endpoint_label(request: Request) -> str:
    # Only the app's own paths become metric labels: a scanner's made-up paths must not grow /metrics.
    return request.url.path if request.url.path in {getattr(r, "path", None) for r in request.app.routes} \
        else "unmatched"


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    request.app.state.ctx.metrics.request(endpoint_label(request), exc.status)
    body = error_body(exc) if request.url.path.startswith("/api/") else exc.body()  # Ollama's shape there
    return JSONResponse(body, status_code=exc.status)


async def value_error(request: Request, exc: ValueError) -> JSONResponse:
    # Input the engine refuses (e.g. a prompt budget that leaves no room): the client's to fix.
    return await api_error(request, ApiError(400, str(exc)))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # An unknown path or method: the same error object as every other refusal, not FastAPI's {"detail"}.
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = f"{request.method} {request.url.path}: {exc.detail}; the endpoints are listed in docs/serving.md"
    response = await api_error(request, ApiError(exc.status_code, message, code=code))
    response.headers.update(exc.headers or {})  # 405's Allow
    return response


async def client_gone(request: Request, exc: ClientDisconnect) -> PlainTextResponse:
    # The client hung up before its body arrived: nobody reads this reply, and it is no server error.
    request.app.state.ctx.metrics.request(endpoint_label(request), 400)
    return PlainTextResponse("client disconnected before sending the whole body", status_code=400)


async def check_api_key(request: Request, call_next):
    """With --api-key, every path but OPEN_PATHS needs `Authorization: Bearer KEY` (or `x-api-key: KEY`)."""
    ctx: ServeContext = request.app.state.ctx
    key = ctx.config.api_key
    if key and request.url.path not in OPEN_PATHS:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not secrets.compare_digest(given.encode(), key.encode()):
            ctx.metrics.request(endpoint_label(request), 401)
            return JSONResponse(ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                         code="invalid_api_key", kind="authentication_error").body(),
                                status_code=401)
    return await call_next(request)


class ServerRoutes:
    """The server's own state: health, Prometheus metrics, and the playground page."""

    def __init__(self, ctx: ServeContext):
        self.ctx = ctx
        self.router = APIRouter()
        self.router.add_api_route("/health", self.health, methods=["GET"])
        self.router.add_api_route("/metrics", self.prometheus, methods=["GET"])
        self.router.add_api_route("/", self.playground, methods=["GET"])

    async def health(self):
        scheduler = self.ctx.scheduler
        return {"status": "ok", "model": self.ctx.config.model_name, "queue_depth": self.ctx.worker.depth,
                "slots_idle": len(scheduler.slots) - scheduler.busy, "slots_processing": scheduler.busy}

    async def prometheus(self):
        ctx = self.ctx
        return PlainTextResponse(ctx.metrics.render(ctx.scheduler.cache.stats(), ctx.worker.depth, ctx.gauges()),
                                 media_type="text/plain; version=0.0.4")

    async def playground(self):
        return HTMLResponse((STATIC / "playground.html").read_text(encoding="utf-8"))
