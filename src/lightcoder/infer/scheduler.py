"""Continuous batching: N slots decode in one batch; requests join and leave at token boundaries.

One thread runs the model. Each step it stacks, for every busy slot, the ids that slot feeds next
(a decode step with its drafted continuation, or a chunk of a newcomer's prompt) and runs them
through one forward pass (infer/batch_forward.py); then each slot samples, accepts drafts, emits
ids to its request and checks its stops. A request that arrives while others decode takes an idle
slot and starts prefilling in the next step; its prompt goes in chunks of `chunk_tokens`, at most
`step_tokens` prompt ids per step while others decode, so a long prompt does not stall them.

Everything the single-request `Engine` does is kept per request: prefix-KV reuse (the slot takes
the free KV buffer of a shared `PrefixCache` with the longest common prefix), greedy replay of an
earlier continuation, exact prompt-lookup speculative decoding, stop ids, max tokens, max time,
cancellation. Greedy output does not depend on the batch: prompt chunks have fixed boundaries and
every matmul is row-invariant (batch_forward.py).

Example:
    sched = BatchScheduler(model, n_slots=4, vocab_size=tok.vocab_size); sched.start()
    stream = sched.submit(prompt_ids, SamplingParams(max_new_tokens=16, stop_ids={2}))
    ids = list(stream)  # blocks; StopIteration.value (the generator protocol) carries the reason
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lightcoder.infer.batch_forward import Segment, forward_segments, padded_row_count
from lightcoder.infer.draft import accept_draft, prompt_lookup_draft
from lightcoder.infer.engine import _DRAFT_WITH_PREFILL_MAX, SamplingParams, sample_next, seeded_generator
from lightcoder.infer.penalties import Penalty
from lightcoder.infer.fused_decode import FusedDecoder
from lightcoder.infer.prefix_cache import CacheEntry, PrefixCache
from lightcoder.model.llama import Transformer


@dataclass
class RequestStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt ids whose keys/values were already in the slot's buffer
    replayed_tokens: int = 0  # new ids taken from a cached greedy continuation
    prompt_seconds: float = 0.0  # admission -> first id sampled (prompt processing)
    predicted_seconds: float = 0.0  # first id sampled -> end
    predicted_tokens: int = 0
    queued_seconds: float = 0.0  # submission -> admission into a slot
    slot: int = -1

    @property
    def prefill_seconds(self) -> float:  # GenerationStats' name for the same thing
        return self.prompt_seconds


@dataclass
class _Request:
    prompt: list[int]
    params: SamplingParams
    cancelled: Callable[[], bool] | None
    id_slot: int
    cache_prompt: bool
    max_prompt_seconds: float | None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # lists of ids, then _Done
    closed: threading.Event = field(default_factory=threading.Event)
    stats: RequestStats = field(default_factory=RequestStats)
    submitted: float = field(default_factory=time.perf_counter)
    task_id: int = 0


@dataclass
class _Done:
    reason: str | None
    error: BaseException | None = None


class TokenStream:
    """A request's new ids as they come (blocking). Ends like a generator: StopIteration.value is
    the stop reason (engine.STOP_REASONS). close() cancels the request at the next step."""

    def __init__(self, req: _Request):
        self._req = req
        self._buffer: deque[int] = deque()
        self._done: _Done | None = None

    @property
    def stats(self) -> RequestStats:
        return self._req.stats

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> int:
        while not self._buffer:
            if self._done is not None:
                if self._done.error is not None:
                    raise self._done.error
                raise StopIteration(self._done.reason)
            item = self._req.out.get()
            if isinstance(item, _Done):
                self._done = item
            else:
                self._buffer.extend(item)
        return self._buffer.popleft()

    def close(self) -> None:
        self._req.closed.set()


class _Slot:
    """One lane of the batch: its request, its KV buffer and where its decoding stands."""

    def __init__(self, index: int):
        self.id = index
        self.req: _Request | None = None
        self.entry: CacheEntry | None = None
        self.chunks: deque[list[int]] = deque()  # prompt ids still to prefill, in fixed-size chunks
        self.fill_only = False  # n_predict 0: only put the prompt into the cache
        self.stop_ids: frozenset[int] = frozenset()
        self.fed: list[int] = []  # ids the next step feeds (chunk, or last token)
        self.draft: list[int] = []  # drafted ids fed after them (greedy only)
        self.queued: list[int] = []  # accepted drafted ids, fed but not yet emitted
        self.produced = 0
        self.rng: torch.Generator | None = None
        self.penalty: Penalty | None = None  # the request's frequency / presence penalty, if any
        self.started = 0.0  # admission time
        self.first_token = 0.0
        self.deadline: float | None = None
        self.prompt_deadline: float | None = None

    @property
    def greedy(self) -> bool:
        return self.req is not None and self.req.params.temperature == 0

    @property
    def replayable(self) -> bool:
        """Plain greedy, not fill-only: its ids may be cached and replayed (engine._Run.replayable)."""
        return self.greedy and self.penalty is None and not self.fill_only


class BatchScheduler:
    """n_slots requests run at once in one batch; more wait in FIFO order (per slot if pinned)."""

    def __init__(self, model: Transformer, *, n_slots: int, vocab_size: int | None = None,
                 cache_entries: int = 8, cache_bytes: int = 4 << 30, max_draft_tokens: int = 4,
                 chunk_tokens: int = 64, step_tokens: int = 256, decoder: FusedDecoder | None = None):
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        if not FusedDecoder.supports(model):
            raise ValueError("continuous batching needs a plain Transformer (no compile/FSDP wrappers)")
        self.model = model.eval()
        self.decoder = decoder or FusedDecoder(model)
        self.vocab_size = vocab_size
        self.max_seq_len = model.cfg.max_seq_len
        # KV buffers: at least one per slot, more keep other sessions' prompts for later (LRU).
        self.cache = PrefixCache(model, max_entries=max(cache_entries, n_slots + 1), max_bytes=cache_bytes)
        self.slots = [_Slot(i) for i in range(n_slots)]
        self.max_draft_tokens, self.chunk_tokens, self.step_tokens = max_draft_tokens, chunk_tokens, step_tokens
        self.waiting: deque[_Request] = deque()
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.steps = 0  # forward passes
        self.rows = 0  # ids fed, all steps
        self.busy_slot_steps = 0  # sum over steps of the slots in the batch
        self.drafted_tokens = self.accepted_tokens = 0
        self._tasks = 0

    # ------------------------------------------------------------------ the outside

    def start(self) -> BatchScheduler:
        """Start the batch thread once, whichever request thread gets here first (under the lock: two
        threads stepping the same slots would corrupt each other's KV buffers)."""
        with self.cond:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="lightcoder-batch", daemon=True)
                self.thread.start()
        return self

    def shutdown(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(10)

    def submit(self, prompt_ids: list[int], params: SamplingParams, cancelled: Callable[[], bool] | None = None, *,
               id_slot: int = -1, cache_prompt: bool = True, max_prompt_seconds: float | None = None) -> TokenStream:
        """Queue a request; its ids come out of the returned stream. max_new_tokens 0 only fills a
        slot's cache with the prompt (an editor's warm-up)."""
        prompt = list(prompt_ids)
        if not prompt:
            raise ValueError("prompt_ids is empty; a prompt starts at least with <s>")
        if len(prompt) >= self.max_seq_len:
            raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in max_seq_len {self.max_seq_len}; "
                             "lower the prompt budget (PromptConfig.max_prompt_tokens)")
        if not -1 <= id_slot < len(self.slots):
            raise ValueError(f"id_slot={id_slot} is not a slot of this server: use -1 (any) or 0..{len(self.slots) - 1}")
        req = _Request(prompt, params, cancelled, id_slot, cache_prompt, max_prompt_seconds)
        req.stats.prompt_tokens = len(prompt)
        with self.cond:
            if self.stopping:
                raise RuntimeError("the scheduler is shut down")
            self._tasks += 1
            req.task_id = self._tasks
            self.waiting.append(req)
            self.cond.notify_all()
        self.start()
        return TokenStream(req)

    @property
    def busy(self) -> int:
        return sum(s.req is not None for s in self.slots)

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        padded_row_count(1, self.decoder)  # the BLAS probe, at this thread's thread count, before any request
        while True:
            with self.cond:
                while not self.stopping and not self.waiting and not any(s.req for s in self.slots):
                    self.cond.wait()
                if self.stopping:
                    break
                self._admit()
            try:
                with torch.inference_mode():
                    self._step()
            except Exception as e:  # a model error fails the running requests; the server keeps going
                for slot in self.slots:
                    if slot.req is not None:
                        self._finish(slot, None, error=e)
        for slot in self.slots:
            if slot.req is not None:
                self._finish(slot, "cancelled")
        for req in self.waiting:
            req.out.put(_Done("cancelled"))

    def _gone(self, req: _Request) -> bool:
        return req.closed.is_set() or (req.cancelled is not None and req.cancelled())

    def _admit(self) -> None:
        """Move waiting requests into idle slots (called with the lock held)."""
        for req in list(self.waiting):
            if self._gone(req):
                self.waiting.remove(req)
                req.out.put(_Done("cancelled"))
                continue
            idle = [s for s in self.slots if s.req is None and req.id_slot in (-1, s.id)]
            if not idle:
                continue
            self.waiting.remove(req)
            try:
                self._start(idle[0], req)
            except Exception as e:  # this request's own settings failed: it alone ends, the loop goes on
                self._finish(idle[0], None, error=e)

    def _start(self, slot: _Slot, req: _Request) -> None:
        """Bind req to slot: replay a cached greedy continuation, or plan the prompt's prefill."""
        now = time.perf_counter()
        slot.req, slot.started, slot.first_token, slot.produced = req, now, 0.0, 0
        slot.queued, slot.draft, slot.fed, slot.chunks = [], [], [], deque()
        req.stats.queued_seconds, req.stats.slot = now - req.submitted, slot.id
        p = req.params
        slot.deadline = None if p.max_seconds is None else now + p.max_seconds
        slot.prompt_deadline = None if req.max_prompt_seconds is None else now + req.max_prompt_seconds
        slot.rng = None if slot.greedy else seeded_generator(p.seed)
        slot.fill_only = p.max_new_tokens == 0
        slot.stop_ids = frozenset(p.stop_ids)
        slot.penalty = Penalty.of(p.frequency_penalty, p.presence_penalty, p.stop_guard, p.stop_ids, p.cache)
        prompt, busy = req.prompt, {s.entry for s in self.slots if s.req is not None and s is not slot}
        if req.cache_prompt and slot.replayable and self._replay(slot, busy):
            return
        entry, reused = self.cache.acquire(prompt, len(prompt) + p.max_new_tokens, busy)
        if not req.cache_prompt:
            reused = 0
        reused = min(reused, len(prompt) - (0 if slot.fill_only else 1))  # the last id's logits are needed
        entry.truncate(reused)
        slot.entry = entry
        req.stats.reused_tokens = reused
        tail = prompt[reused:]
        entry.greedy_from, entry.pending = (len(prompt), None) if slot.replayable else (None, None)
        if slot.greedy and not slot.fill_only and len(tail) <= _DRAFT_WITH_PREFILL_MAX:
            slot.draft = self._draft(prompt, p.max_new_tokens - 1, entry.capacity - len(prompt))
        if slot.draft or len(tail) <= self.chunk_tokens:
            slot.chunks.append(tail)
        else:  # fixed boundaries: the same chunks alone or in any batch
            slot.chunks.extend(tail[i:i + self.chunk_tokens] for i in range(0, len(tail), self.chunk_tokens))
        if not tail:
            self._finish(slot, "length")

    def _replay(self, slot: _Slot, busy: set) -> bool:
        """The user typed into an earlier greedy completion: emit its rest without the model."""
        req = slot.req
        entry, _ = self.cache.best_match(req.prompt, busy)
        replay = entry.greedy_continuation(req.prompt) if entry is not None else []
        if not replay or entry.pending is None:
            return False
        slot.entry = entry
        cache = self.cache
        cache._clock += 1
        entry.last_used = cache._clock
        cache.lookups, cache.hits = cache.lookups + 1, cache.hits + 1
        cache.prompt_tokens, cache.reused_tokens = cache.prompt_tokens + len(req.prompt), cache.reused_tokens + len(req.prompt)
        req.stats.reused_tokens = len(req.prompt)
        stop_ids, limit = frozenset(req.params.stop_ids), req.params.max_new_tokens
        emitted = []
        for token in replay:
            if token in stop_ids or len(emitted) == limit:
                break
            emitted.append(token)
        req.stats.replayed_tokens = slot.produced = len(emitted)
        slot.first_token = time.perf_counter()
        if emitted:
            req.out.put(emitted)
        if len(emitted) < len(replay):
            self._finish(slot, "length" if len(emitted) == limit else "stop")
            return True
        pos = len(entry.tokens)
        if len(emitted) == limit:
            self._finish(slot, "length")
        elif pos + 1 >= self.max_seq_len or not self.cache.ensure_capacity(
                entry, min(pos + 1 + limit - len(emitted), self.max_seq_len)):
            self._finish(slot, "max_seq_len")
        else:
            slot.fed, entry.pending = [entry.pending], None  # continue after the cached ids
        return True

    def _draft(self, context: list[int], max_tokens: int, room: int) -> list[int]:
        limit = min(self.max_draft_tokens, max_tokens, room)
        return prompt_lookup_draft(context, limit) if limit > 0 else []

    # ------------------------------------------------------------------ one step

    def _plan(self) -> list[tuple[_Slot, Segment, bool]]:
        """This step's segments: every decoding slot's next ids, then prompt chunks within the budget."""
        plan, now = [], time.perf_counter()
        for slot in self.slots:
            if slot.req is not None and slot.fed:
                entry = slot.entry
                plan.append((slot, Segment(entry.kv, len(entry.tokens), slot.fed + slot.draft, 0), True))
        budget = self.step_tokens if plan else 1 << 30  # nobody waits on a prefill-only step
        for slot in sorted((s for s in self.slots if s.req is not None and s.chunks), key=lambda s: s.started):
            if slot.prompt_deadline is not None and now > slot.prompt_deadline and \
                    len(slot.entry.tokens) > slot.req.stats.reused_tokens:
                self._finish(slot, "time")  # t_max_prompt_ms: what was processed stays cached
                continue
            pos = len(slot.entry.tokens)
            for chunk in slot.chunks:
                if budget <= 0:
                    break
                last = chunk is slot.chunks[-1]
                ids = chunk + (slot.draft if last else [])
                logits_from = len(ids) if (not last or slot.fill_only) else len(chunk) - 1
                plan.append((slot, Segment(slot.entry.kv, pos, ids, logits_from), False))
                pos += len(chunk)
                budget -= len(chunk)
        return plan

    def _step(self) -> None:
        for slot in self.slots:
            if slot.req is not None and self._gone(slot.req):
                self._finish(slot, "cancelled")
        plan = self._plan()
        if not plan:
            return
        outputs = forward_segments(self.decoder, [seg for _, seg, _ in plan])
        self.steps += 1
        self.rows += sum(len(seg.tokens) for _, seg, _ in plan)
        self.busy_slot_steps += len({id(slot) for slot, _, _ in plan})
        for (slot, seg, decoding), logits in zip(plan, outputs):
            if slot.req is None:
                continue
            try:
                self._take_output(slot, decoding, logits)
            except Exception as e:  # its own sampling settings failed on its logits: fail this slot only
                self._finish(slot, None, error=e)

    def _take_output(self, slot: _Slot, decoding: bool, logits: torch.Tensor) -> None:
        """One planned segment's logits (rows, V): a decoding slot's next ids, or a prompt chunk's end."""
        if self.vocab_size is not None and self.vocab_size < logits.size(-1):
            logits[:, self.vocab_size:] = float("-inf")  # ids no tokenizer can decode
        if decoding:
            self._after_feed(slot, slot.fed, logits)
            return
        chunk = slot.chunks.popleft()
        if slot.chunks:
            slot.entry.tokens.extend(chunk)
        elif slot.fill_only:
            slot.entry.tokens.extend(chunk)
            self._finish(slot, "length")
        else:
            self._after_feed(slot, chunk, logits)

    def _after_feed(self, slot: _Slot, fed: list[int], logits: torch.Tensor) -> None:
        """fed (+ slot.draft) went in; logits (1 + len(draft), V). Accept drafts, sample, emit."""
        entry, draft = slot.entry, slot.draft
        if draft:
            rows = slot.penalty.apply_rows(logits, draft) if slot.penalty else logits
            chosen = rows.argmax(-1).tolist()  # chosen[i]: the greedy id after draft[:i]
            accepted = accept_draft(entry, fed, draft, chosen)
            self.drafted_tokens += len(draft)
            self.accepted_tokens += accepted
            slot.queued, row = draft[:accepted], logits[accepted]
        else:
            entry.tokens.extend(fed)
            entry.pending = None
            slot.queued, row = [], logits[-1]
        slot.draft, slot.fed = [], []
        self._sample_and_emit(slot, row)

    def _sample_and_emit(self, slot: _Slot, logits: torch.Tensor) -> None:
        req, p, entry = slot.req, slot.req.params, slot.entry
        now = time.perf_counter()
        if not slot.first_token:
            slot.first_token = now
        if slot.penalty:
            logits = slot.penalty.apply(logits, slot.queued)
        token = sample_next(logits, p.temperature, p.top_k, p.top_p, slot.rng)
        emitted, stop_ids = [], slot.stop_ids
        for i, out in enumerate([*slot.queued, token]):
            if i == len(slot.queued) and slot.replayable:
                entry.pending = token
            if out in stop_ids:
                return self._finish(slot, "stop", emitted)
            slot.produced += 1
            if slot.penalty:
                slot.penalty.add(out)
            emitted.append(out)
            if slot.produced >= p.max_new_tokens:
                return self._finish(slot, "length", emitted)
            if self._gone(req):
                return self._finish(slot, "cancelled", emitted)
            if slot.deadline is not None and now >= slot.deadline:
                return self._finish(slot, "time", emitted)
        req.out.put(emitted)
        slot.queued = []
        pos = len(entry.tokens)
        if pos + 1 > self.max_seq_len or not self.cache.ensure_capacity(entry, pos + 1):
            return self._finish(slot, "max_seq_len")
        slot.fed = [token]
        if slot.greedy:
            entry.tokens.append(token)  # the context a draft continues
            slot.draft = self._draft(entry.tokens, p.max_new_tokens - slot.produced - 1, entry.capacity - pos - 1)
            entry.tokens.pop()

    def _finish(self, slot: _Slot, reason: str | None, emitted: list[int] = (), error: BaseException | None = None) -> None:
        req = slot.req
        now = time.perf_counter()
        st = req.stats
        st.predicted_tokens = slot.produced
        st.prompt_seconds = (slot.first_token or now) - slot.started
        st.predicted_seconds = now - slot.first_token if slot.first_token else 0.0
        if emitted:
            req.out.put(list(emitted))
        req.out.put(_Done(reason, error))
        if slot.entry is not None and (error is not None or slot.chunks):
            slot.entry.greedy_from, slot.entry.pending = None, None  # its prompt is not all in there
        slot.req, slot.chunks, slot.fed, slot.draft, slot.queued = None, deque(), [], [], []
