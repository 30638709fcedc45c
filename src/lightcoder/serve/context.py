"""What every route module of `lightcoder serve` shares: the model, the batch scheduler, limits, helpers.

Routes (app.py: OpenAI; llamacpp_routes.py: llama.cpp's server; ollama_routes.py: Ollama) turn a
request into keyword arguments for `Completer.stream` / `complete` (`ServeContext.run_kwargs`) and
run them as a job on the `EngineWorker`; the job's tokens come from the shared `BatchScheduler`,
so requests of every API decode together in one batch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lightcoder.infer.completer import Completer, Completion
from lightcoder.infer.retrieval import ChunkIndex, query_text
from lightcoder.infer.scheduler import BatchScheduler
from lightcoder.serve.metrics import Metrics
from lightcoder.serve.schemas import ApiError, Limits
from lightcoder.serve.worker import EngineWorker


@dataclass(kw_only=True)
class ServerConfig:
    model_name: str = "lightcoder"
    api_key: str | None = None  # when set, requests need "Authorization: Bearer KEY"
    limits: Limits = field(default_factory=Limits)
    workspace_index: ChunkIndex | None = None  # cross-file context from a directory (--workspace)
    context_chunks: int = 3  # BM25 top-k, as aiXcoder's CrossCodeEval setup
    parallel: int = 4  # batch slots (--parallel): requests decoded together
    draft_tokens: int = 4  # prompt-lookup ids checked per step for greedy requests (0 = no speculative decoding)
    model_path: str = ""  # shown by /props and Ollama's /api/show


class ServeContext:
    def __init__(self, completer: Completer, config: ServerConfig):
        self.completer, self.config, self.limits = completer, config, config.limits
        engine = completer.engine
        self.scheduler = BatchScheduler(completer.model, n_slots=config.parallel, vocab_size=engine.vocab_size,
                                        cache_entries=max(engine.cache.max_entries, config.parallel + 1),
                                        decoder=engine.decoder, max_draft_tokens=config.draft_tokens)
        self.worker = EngineWorker(max_queue=self.limits.max_queue)
        self.metrics = Metrics()
        self.context_room = completer.model_cfg.max_seq_len - 1  # at least one prompt token must fit

    def shutdown(self) -> None:
        self.scheduler.shutdown()
        self.worker.shutdown()

    def check_model(self, name: str | None) -> None:
        if name and name != self.config.model_name:
            raise ApiError(404, f"model {name!r} does not exist; this server serves {self.config.model_name!r} "
                           "(GET /v1/models)", param="model", code="model_not_found")

    def context_for(self, prefix: str, path: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Cross-file snippets: BM25 over the request's extra files, then over --workspace."""
        if not extra and self.config.workspace_index is None:
            return []
        query, k = query_text(prefix), self.config.context_chunks
        hits: list[tuple[str, str]] = []
        if extra:
            hits += ChunkIndex.from_files(extra).search(query, k, exclude_path=path or None)
        if self.config.workspace_index is not None and len(hits) < k:
            hits += self.config.workspace_index.search(query, k - len(hits), exclude_path=path or None)
        return hits

    def run_kwargs(self, *, prefix, suffix, path, max_tokens, temperature, top_p, top_k, seed, stop, mode,
                   context, middle="", id_slot=-1, cache_prompt=True, max_prompt_seconds=None) -> dict:
        """Keywords of Completer.stream/complete; tokens come from the batch scheduler."""
        generate = partial(self.scheduler.submit, id_slot=id_slot, cache_prompt=cache_prompt,
                           max_prompt_seconds=max_prompt_seconds)
        return dict(prefix=prefix, suffix=suffix, path=path, max_new_tokens=max_tokens, temperature=temperature,
                    top_p=top_p, top_k=top_k, seed=seed or 0, stop=stop, mode=mode, context=context,
                    max_seconds=self.limits.max_seconds, middle=middle, generate=generate)

    async def build_ids(self, kwargs: dict) -> list[int]:
        """The prompt ids, tokenized on a thread-pool thread (bad input fails here, before any reply)."""
        return await run_in_threadpool(
            self.completer.build, kwargs["prefix"], kwargs["suffix"], path=kwargs["path"], mode=kwargs["mode"],
            max_new_tokens=kwargs["max_new_tokens"], context=kwargs["context"], middle=kwargs.get("middle", ""))

    def sse(self, items, endpoint: str, started: float, done_marker: bool = True) -> StreamingResponse:
        """Server-sent events, one `data: {json}` per item (OpenAI and llama.cpp streaming)."""
        metrics = self.metrics

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

    def gauges(self) -> dict:
        """Batching state for /metrics."""
        s = self.scheduler
        return {"slots_total": len(s.slots), "slots_busy": s.busy, "batch_steps_total": s.steps,
                "batch_rows_total": s.rows,
                "busy_slots_per_step": s.busy_slot_steps / s.steps if s.steps else 0.0}


def finish_reason(result: Completion) -> str:
    """OpenAI's vocabulary: "length" when cut by a token or time budget, else "stop"."""
    return "length" if result.stop_reason in ("length", "max_seq_len", "time") else "stop"
