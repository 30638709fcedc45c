"""What every route module of `lightcoder serve` shares: the model, the batch scheduler, limits, helpers.

Routes (openai_routes.py, llamacpp_routes.py: llama.cpp's server, ollama_routes.py) turn a request
into keyword arguments for `Completer.stream` / `complete` (`ServeContext.run_kwargs`) and run them
on the `EngineWorker` (`ServeContext.complete`, or `ServeContext.stream` for a streamed reply); the
job's tokens come from the shared `BatchScheduler`, so requests of every API decode together in one
batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lightcoder.infer.completer import Completer, Completion
from lightcoder.infer.retrieval import ChunkIndex, query_text
from lightcoder.infer.scheduler import BatchScheduler
from lightcoder.serve.metrics import Metrics
from lightcoder.serve.schemas import Limits, default_new_tokens
from lightcoder.serve.streaming import Last, Piece, completion_events
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
    # for requests that send none (infer/penalties.py); `lightcoder serve RUN` takes the run's eval settings
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    cache_weight: float = 0.0  # the n-gram cache over the text around the cursor (ngram_cache.py)


def request_seed(seed: int | None) -> int:
    """A request's sampling seed: None or negative (OpenAI's unset, Ollama's and llama.cpp's -1) is a fresh
    random one, so two sampled requests differ unless the client fixes the seed."""
    return random.randrange(1 << 31) if seed is None or seed < 0 else seed


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
                   context, middle="", id_slot=-1, cache_prompt=True, max_prompt_seconds=None,
                   frequency_penalty=None, presence_penalty=None, fim=None) -> dict:
        """Keywords of Completer.stream/complete; tokens come from the batch scheduler. Penalties None:
        the server's defaults. fim True: an infilling request (FIM prompt even with an empty suffix)."""
        generate = partial(self.scheduler.submit, id_slot=id_slot, cache_prompt=cache_prompt,
                           max_prompt_seconds=max_prompt_seconds)
        frequency_penalty, presence_penalty = self.penalties(frequency_penalty, presence_penalty)
        # a warm-up (0 new tokens) cuts its prompt as a request with the server's default length would, so
        # the ids it leaves in the cache are the ones the editor's next request sends
        budget = self.default_prompt_tokens(mode) if max_tokens == 0 else None
        return dict(prefix=prefix, suffix=suffix, path=path, max_new_tokens=max_tokens, temperature=temperature,
                    top_p=top_p, top_k=top_k, seed=request_seed(seed), stop=stop, mode=mode, context=context,
                    max_seconds=self.limits.max_seconds, middle=middle, generate=generate,
                    frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
                    cache_weight=self.config.cache_weight, fim=fim, max_prompt_tokens=budget)

    def default_prompt_tokens(self, mode: str) -> int:
        """The prompt budget of a request that leaves its length to the server (n_predict -1)."""
        default_new = default_new_tokens(-1, self.limits, self.context_room)
        return self.completer.prompt_config(mode, default_new).max_prompt_tokens

    def penalties(self, frequency: float | None, presence: float | None) -> tuple[float, float]:
        """A request's (frequency_penalty, presence_penalty); None: the server's default."""
        return (self.config.frequency_penalty if frequency is None else frequency,
                self.config.presence_penalty if presence is None else presence)

    async def tokenize_first(self, kwargs: dict) -> None:
        """A streamed request's prompt ids, built into kwargs on a thread-pool thread before the reply starts
        (bad input fails here, before the 200); the text stays in kwargs for the stop guard and the cache."""
        kwargs["prompt_ids"] = await run_in_threadpool(
            self.completer.build, kwargs["prefix"], kwargs["suffix"], path=kwargs["path"], mode=kwargs["mode"],
            max_new_tokens=kwargs["max_new_tokens"], context=kwargs["context"], middle=kwargs.get("middle", ""),
            fim=kwargs.get("fim"), max_prompt_tokens=kwargs.get("max_prompt_tokens"))
        kwargs["ids_from_text"] = True

    def stream(self, runs: list[dict], piece: Piece, last: Last) -> AsyncIterator[dict]:
        """Reply items of streamed completions (streaming.completion_events), produced on the worker."""
        return self.worker.stream(completion_events(self.completer, runs, piece, last, self.metrics))

    async def complete(self, request: Request, runs: list[dict], endpoint: str,
                       started: float) -> list[Completion] | None:
        """Completer.complete for each dict of keywords, on the worker, metrics recorded; None when
        the client went away first (reply with client_gone())."""
        results = await self.worker.run(
            lambda cancelled: [self.completer.complete(**kwargs, cancelled=cancelled) for kwargs in runs], request)
        if results is None:
            return None
        for result in results:
            self.metrics.completion(result)
        self.metrics.request(endpoint, 200, time.perf_counter() - started)
        return results

    def gauges(self) -> dict:
        """Batching state for /metrics."""
        s = self.scheduler
        return {"slots_total": len(s.slots), "slots_busy": s.busy, "batch_steps_total": s.steps,
                "batch_rows_total": s.rows,
                "busy_slots_per_step": s.busy_slot_steps / s.steps if s.steps else 0.0}


def client_gone() -> JSONResponse:
    """The reply to a request whose client disconnected before its completion was done."""
    return JSONResponse({}, status_code=499)


def hit_limit(result: Completion) -> bool:
    """Whether a token, context or time budget ended the completion (not a stop id or string)."""
    return result.stop_reason in ("length", "max_seq_len", "time")


def finish_reason(result: Completion) -> str:
    """OpenAI's and Ollama's vocabulary: "length" when cut by a budget, else "stop"."""
    return "length" if hit_limit(result) else "stop"
