"""Streamed replies, for every API: one generator turns completions into reply items on the engine
thread, and one HTTP body writes those items as server-sent events (OpenAI, llama.cpp) or as NDJSON
lines (Ollama).

Example (one streamed completion, SSE):
    events = completion_events(completer, [kwargs], piece=lambda i, text: {"content": text},
                               last=lambda i, result: {"stop": True}, metrics=metrics)
    return sse_response(worker.stream(events), metrics, "/completion", started)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi.responses import StreamingResponse

from lightcoder.infer.completer import Completer, Completion
from lightcoder.serve.metrics import Metrics

Piece = Callable[[int, str], dict]  # (run index, new text) -> one reply item
Last = Callable[[int, Completion], dict]  # (run index, the finished completion) -> its last item


def completion_events(completer: Completer, runs: list[dict], piece: Piece, last: Last,
                      metrics: Metrics) -> Callable[[Callable[[], bool]], Iterator[dict]]:
    """A job for EngineWorker.stream: the runs one after another (each a dict of Completer.stream
    keywords); piece(i, text) for each streamed text of run i, then last(i, result) once it ended."""

    def events(cancelled: Callable[[], bool]) -> Iterator[dict]:
        for i, kwargs in enumerate(runs):
            pieces = completer.stream(**kwargs, cancelled=cancelled)
            while True:
                try:
                    text = next(pieces)
                except StopIteration as done:  # its value: the Completion
                    metrics.completion(done.value)
                    yield last(i, done.value)
                    break
                yield piece(i, text)

    return events


def sse_response(items: AsyncIterator[dict], metrics: Metrics, endpoint: str, started: float,
                 done_marker: bool = True) -> StreamingResponse:
    """Server-sent events, one `data: {json}` per item, then `data: [DONE]` (OpenAI; llama.cpp has none)."""
    return _streamed(items, metrics, endpoint, started, encode=lambda item: f"data: {json.dumps(item)}\n\n",
                     end="data: [DONE]\n\n" if done_marker else "", media_type="text/event-stream",
                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                     error=lambda message: {"error": {"message": message, "type": "server_error", "code": 500}})


def ndjson_response(items: AsyncIterator[dict], metrics: Metrics, endpoint: str, started: float) -> StreamingResponse:
    """One JSON object per line (Ollama)."""
    return _streamed(items, metrics, endpoint, started, encode=lambda item: json.dumps(item) + "\n", end="",
                     media_type="application/x-ndjson", error=lambda message: {"error": message})


def _streamed(items: AsyncIterator[dict], metrics: Metrics, endpoint: str, started: float, *,
              encode: Callable[[dict], str], end: str, media_type: str, error: Callable[[str], dict],
              headers: dict | None = None) -> StreamingResponse:
    async def body():
        try:
            async for item in items:
                yield encode(item)
        except Exception as e:  # the status line is sent: the failure goes to the client as the last item
            metrics.request(endpoint, 500, time.perf_counter() - started)
            logging.getLogger("uvicorn.error").exception("streamed completion failed on %s", endpoint)
            yield encode(error(f"the completion failed: {e}"))
        else:
            if end:
                yield end
            metrics.request(endpoint, 200, time.perf_counter() - started)
        finally:
            await items.aclose()  # a disconnected client cancels the job

    return StreamingResponse(body(), media_type=media_type, headers=headers)
