"""The request worker: jobs run on a thread pool; the event loop never blocks on model math.

A job is one request's text loop (prompt building, detokenizing, stop strings): it submits its
prompt to the batch scheduler (infer/scheduler.py), whose one thread runs the model for every
request at once, and blocks on that request's tokens. A bounded count of waiting + running jobs
gives 429 beyond `max_queue` (also the pool's size). A job sees a `cancelled()` callable and stops
at the next token once its client is gone.

Example:
    worker = EngineWorker(max_queue=64)
    result = await worker.run(lambda cancelled: completer.complete(..., cancelled=cancelled), request)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request

from lightcoder.serve.schemas import ApiError

_DONE = object()


class EngineWorker:
    def __init__(self, *, max_queue: int):
        self.executor = ThreadPoolExecutor(max_workers=max(1, max_queue), thread_name_prefix="lightcoder-request")
        self.max_queue = max_queue
        self.depth = 0  # jobs waiting or running (touched on the event loop only)

    def _admit(self) -> None:
        if self.depth >= self.max_queue:
            raise ApiError(429, f"server busy: {self.depth} requests queued, the limit is max_queue={self.max_queue}; "
                           "retry later or start the server with a larger --max-queue", code="queue_full",
                           kind="rate_limit_error")
        self.depth += 1

    def _release(self, _future) -> None:
        self.depth -= 1  # when the job has really finished, not when its client left

    async def run(self, job: Callable[[Callable[[], bool]], object], request: Request | None = None):
        """Run job(cancelled) on the engine thread; cancel it when the client disconnects."""
        self._admit()
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, lambda: None if cancel.is_set() else job(cancel.is_set))
        future.add_done_callback(self._release)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.05)
                if done:
                    return future.result()
                if request is not None and await request.is_disconnected():
                    cancel.set()
        except asyncio.CancelledError:
            cancel.set()
            raise

    def stream(self, make_iter: Callable[[Callable[[], bool]], Iterator[object]]) -> AsyncIterator[object]:
        """Items of make_iter(cancelled) produced on the engine thread, as they come.

        Admitted and started here, in the request handler, so that a full queue is a 429 before the reply's
        200 goes out. Closing the returned async iterator (the client went away) cancels the job at its next
        token; one never read still ends (its limits bound it) and frees its place.
        """
        self._admit()
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def produce() -> None:
            try:
                if cancel.is_set():
                    return
                for item in make_iter(cancel.is_set):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if cancel.is_set():
                        break
            except BaseException as e:  # hand errors to the event loop
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(self.executor, produce)
        future.add_done_callback(self._release)
        return self._drain(queue, cancel)

    @staticmethod
    async def _drain(queue: asyncio.Queue, cancel: threading.Event) -> AsyncIterator[object]:
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
