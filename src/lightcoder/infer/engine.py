"""Token-level generation: prefill, decode one token at a time with a preallocated KV cache, sample.

`generate` is the reference decoder (one request, no cache). `Engine.generate` serves one request
with prefix-KV reuse: replay (ids a cached greedy run already chose) -> prefill (the prompt past its
cached prefix) -> decode (sample, emit, feed; greedy steps also check a prompt-lookup draft), each
step a method of its own; it gives generate()'s greedy tokens whatever the cache holds.
The engine knows nothing about text or tokenizers (prompts.py builds ids, completer.py decodes).

Example:
    for token in generate(model, ids, max_new_tokens=64, stop_ids={2}):
        print(token)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass

import torch

from lightcoder.infer.draft import accept_draft, prompt_lookup_draft
from lightcoder.infer.fused_decode import FusedDecoder
from lightcoder.infer.ngram_cache import CacheMix
from lightcoder.infer.penalties import Penalty, StopGuard, check_penalties
from lightcoder.infer.prefix_cache import CacheEntry, PrefixCache
from lightcoder.model.llama import KVCache, Transformer

STOP_REASONS = ("stop", "length", "max_seq_len", "time", "cancelled")
_FUSED_PREFILL_MAX = 256  # prompt tails up to this long go through the fused path; longer: the model
_DRAFT_WITH_PREFILL_MAX = 32  # prompt tails up to this long also carry a draft of the first new ids
# Temperatures below this sample as 0 (argmax): fp32 logits divided by 1e-45 overflow to inf and the
# softmax turns to NaN, and what such a temperature asks for is the argmax anyway.
MIN_SAMPLING_TEMPERATURE = 1e-4


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for any integer seed: torch takes [-2**63, 2**64), so a seed outside wraps
    modulo 2**64 (the same bits for every seed torch takes). Example: seeded_generator(2**64 + 5) draws
    as seeded_generator(5)."""
    return torch.Generator().manual_seed(seed % 2**64)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> int:
    """Next token id from logits (V,): argmax when temperature == 0, else a draw from the
    temperature-scaled distribution restricted to the top_k tokens (0 = all) and to the smallest
    set whose probability reaches top_p (1.0 = all). The draw uses `rng` only. A temperature below
    MIN_SAMPLING_TEMPERATURE is taken as 0."""
    if not temperature >= 0 or top_k < 0 or not 0.0 < top_p <= 1.0:  # `not >=`: NaN fails too
        raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
    if temperature < MIN_SAMPLING_TEMPERATURE:
        return int(logits.argmax())
    if rng is None:
        raise ValueError("sampling (temperature > 0) needs an explicit rng: torch.Generator().manual_seed(seed)")
    logits = logits.float().to(rng.device) / temperature  # (V,)
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (V,)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=rng))


def mask_vocab(logits: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
    """logits (..., V) with the ids >= vocab_size set to -inf, in place: ids no tokenizer can decode
    (aiXcoder-7B pads its vocabulary to 49152). vocab_size None: unchanged."""
    if vocab_size is not None and vocab_size < logits.size(-1):
        logits[..., vocab_size:] = float("-inf")
    return logits


def check_prompt(prompt_ids: list[int], max_seq_len: int) -> None:
    """ValueError unless the prompt is non-empty and leaves room for at least one new id."""
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; a prompt starts at least with <s>")
    if len(prompt_ids) >= max_seq_len:
        raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room in max_seq_len {max_seq_len}; "
                         "lower the prompt budget (PromptConfig.max_prompt_tokens)")


def forward_last(model: Transformer, tokens: torch.Tensor, kv_cache: list[KVCache], start_pos: int) -> torch.Tensor:
    """tokens (1, T) at positions start_pos.. -> logits (V,) of the last position only (no (T, V) matmul)."""
    return model(tokens, kv_cache=kv_cache, start_pos=start_pos, last_logits_only=True)[0, -1]


def prefill(model: Transformer, prompt: torch.Tensor, kv_cache: list[KVCache]) -> torch.Tensor:
    """Run the whole prompt (1, T) through the model once; logits (V,) for the next token."""
    return forward_last(model, prompt, kv_cache, 0)


def decode_one(model: Transformer, token: int, pos: int, kv_cache: list[KVCache]) -> torch.Tensor:
    """Feed one token at position pos; logits (V,) for the token after it."""
    x = torch.tensor([[token]], dtype=torch.long, device=kv_cache[0].k.device)  # (1, 1)
    return model(x, kv_cache=kv_cache, start_pos=pos)[0, -1]


@torch.inference_mode()
def generate(
    model: Transformer,
    prompt_ids: list[int],
    *,
    max_new_tokens: int,
    stop_ids: Collection[int],
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
    vocab_size: int | None = None,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    stop_guard: StopGuard | None = None,
    cache: CacheMix | None = None,
) -> Iterator[int]:
    """Yield up to max_new_tokens new token ids; stops before yielding a stop id. The reference
    decoder: one model, no cache, no drafts; `Engine.generate` gives the same greedy tokens.

    vocab_size: when the tokenizer knows fewer ids than the model's (padded) vocabulary, only ids
    below it are ever produced (see mask_vocab).

    The generator's return value (StopIteration.value) says why it ended: "stop" (a stop id),
    "length" (max_new_tokens reached) or "max_seq_len" (the model's context is full).
    Sampling without an rng uses a generator seeded with 0, so runs are reproducible.
    frequency_penalty / presence_penalty: infer/penalties.py, over the ids generated so far; stop_guard:
    while it holds for the ids so far, no stop id is chosen (infer/stop_guard.py); cache: an n-gram
    cache mixed into the choice (infer/ngram_cache.py).
    """
    check_prompt(prompt_ids, model.cfg.max_seq_len)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens == 0:
        return "length"
    if temperature >= MIN_SAMPLING_TEMPERATURE and rng is None:
        rng = seeded_generator(0)
    kv_cache = model.init_kv_cache(1, min(len(prompt_ids) + max_new_tokens, model.cfg.max_seq_len))
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=model.output.weight.device)  # (1, T)
    logits = prefill(model, prompt, kv_cache)
    pos, produced, stop_ids = len(prompt_ids), 0, frozenset(stop_ids)
    penalty = Penalty.of(frequency_penalty, presence_penalty, stop_guard, stop_ids, cache)
    while True:
        logits = mask_vocab(logits, vocab_size)
        token = sample_next(penalty.apply(logits) if penalty else logits, temperature, top_k, top_p, rng)
        if token in stop_ids:
            return "stop"
        if penalty:
            penalty.add(token)
        yield token
        produced += 1
        if produced == max_new_tokens:
            return "length"
        if pos >= kv_cache[0].max_len:
            return "max_seq_len"
        logits = decode_one(model, token, pos, kv_cache)
        pos += 1


# ---------------------------------------------------------------------------------------------
# The serving engine: generate() plus prefix-KV reuse, replay, deadlines and cancellation


@dataclass(kw_only=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy (so is anything below MIN_SAMPLING_TEMPERATURE)
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_ids: Collection[int] = ()
    max_seconds: float | None = None  # stop with reason "time" once this much wall time has passed
    frequency_penalty: float = 0.0  # infer/penalties.py: per earlier occurrence of an id in this output
    presence_penalty: float = 0.0  # once for any id this output already holds
    stop_guard: StopGuard | None = None  # ids so far -> True while the output must not end (stop_guard.py)
    cache: CacheMix | None = None  # an n-gram cache mixed into the choice (ngram_cache.py)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not self.temperature >= 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got "
                             f"{self.temperature}, {self.top_k}, {self.top_p}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0 (or None), got {self.max_seconds}")
        if self.temperature < MIN_SAMPLING_TEMPERATURE:
            self.temperature = 0.0  # greedy: drafts, replay and the prefix cache's continuations apply
        check_penalties(self.frequency_penalty, self.presence_penalty)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt ids whose keys/values came from the prefix cache
    replayed_tokens: int = 0  # new ids taken from a cached greedy continuation (no model call)
    prefill_seconds: float = 0.0


Emitting = Generator[int, None, str | None]  # yields ids; returns a stop reason, or None to go on
Step = tuple[list[int], torch.Tensor]  # (accepted draft ids, fed already; logits (V,) for the id after them)


@dataclass(kw_only=True)
class _Run:
    """One Engine.generate call: its settings and how many ids it has yielded."""

    params: SamplingParams
    stop_ids: frozenset[int]
    greedy: bool  # argmax decoding: drafts can be checked
    rng: torch.Generator | None  # None when greedy
    started: float  # perf_counter at the call
    cancelled: Callable[[], bool] | None
    penalty: Penalty | None = None  # None: no frequency / presence penalty, no stop guard, no n-gram cache
    produced: int = 0

    @classmethod
    def begin(cls, params: SamplingParams, cancelled: Callable[[], bool] | None) -> _Run:
        greedy = params.temperature == 0
        return cls(params=params, stop_ids=frozenset(params.stop_ids), greedy=greedy,
                   rng=None if greedy else seeded_generator(params.seed),
                   started=time.perf_counter(), cancelled=cancelled,
                   penalty=Penalty.of(params.frequency_penalty, params.presence_penalty, params.stop_guard,
                                      params.stop_ids, params.cache))

    @property
    def replayable(self) -> bool:
        """Plain greedy: its ids are what any later plain greedy request after the same prompt gets, so
        they may be cached and replayed (a penalized run's depend on where its output began)."""
        return self.greedy and self.penalty is None

    def penalized(self, logits: torch.Tensor, ahead: list[int] = ()) -> torch.Tensor:
        return self.penalty.apply(logits, ahead) if self.penalty else logits

    @property
    def remaining(self) -> int:
        return self.params.max_new_tokens - self.produced

    def emit(self, token: int) -> Emitting:
        """Yield token unless it is a stop id; returns why generation ends after it (None: go on)."""
        if token in self.stop_ids:
            return "stop"
        self.produced += 1
        if self.penalty:
            self.penalty.add(token)
        yield token
        if self.remaining <= 0:
            return "length"
        if self.cancelled is not None and self.cancelled():
            return "cancelled"
        if self.params.max_seconds is not None and time.perf_counter() >= self.started + self.params.max_seconds:
            return "time"
        return None


class Engine:
    """One model, one prefix cache; `generate` yields ids and returns a reason from STOP_REASONS.

    A request is served by replay (ids a cached greedy run already chose), else prefill (the prompt
    past the cached prefix), then decode (one sampled id per step); greedy requests put a draft of
    the next ids into the same model pass (speculative decoding, same tokens).

    Not thread-safe: the server runs all generation on one worker thread (torch ops use the cores).
    """

    def __init__(self, model: Transformer, *, vocab_size: int | None = None, cache_entries: int = 8,
                 cache_bytes: int = 2 << 30, fused_decode: bool = True, max_draft_tokens: int = 4):
        self.model = model.eval()
        # Steps and short prompt tails through fused, transposed weights (same math, fewer ops, faster
        # layout); prompt tails over _FUSED_PREFILL_MAX ids through the model itself.
        self.decoder = FusedDecoder(model) if fused_decode and FusedDecoder.supports(model) else None
        self.vocab_size = vocab_size
        self.cache = PrefixCache(model, max_entries=cache_entries, max_bytes=cache_bytes)
        self.device = model.output.weight.device
        self.last_stats = GenerationStats()
        # Greedy requests check up to this many drafted ids per weight pass (0 = off); same tokens.
        self.max_draft_tokens = max_draft_tokens
        self.drafter: Callable[[list[int], int], list[int]] = prompt_lookup_draft
        self.drafted_tokens = 0
        self.accepted_tokens = 0

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], params: SamplingParams, *,
                 cancelled: Callable[[], bool] | None = None) -> Iterator[int]:
        """Yield new ids; stops before yielding a stop id. Same tokens as the module-level generate()
        for greedy decoding, whatever the cache holds."""
        prompt = list(prompt_ids)
        check_prompt(prompt, self.model.cfg.max_seq_len)
        self.last_stats = GenerationStats(prompt_tokens=len(prompt))
        if params.max_new_tokens == 0:
            return "length"
        run = _Run.begin(params, cancelled)
        entry, replay = self._replay_source(prompt) if run.replayable else (None, [])
        if replay:
            reason = yield from self._replay(replay, prompt, run)
            if reason is not None:
                return reason
            step = self._resume(entry, run)
        else:
            entry, step = self._prefill(prompt, run)
        while step is not None:
            queued, logits = step
            token = sample_next(run.penalized(logits, queued), params.temperature, params.top_k, params.top_p, run.rng)
            reason = yield from self._emit(entry, queued, token, run)
            if reason is not None:
                return reason
            step = self._decode(entry, token, run)
        return "max_seq_len"

    # ------------------------------------------------------------------ replay, prefill, decode

    def _replay_source(self, prompt: list[int]) -> tuple[CacheEntry | None, list[int]]:
        """The cached entry whose greedy run went past prompt, and the ids it chose after it ([]: none)."""
        entry, _ = self.cache.best_match(prompt)
        if entry is None or entry.pending is None:  # pending None: a run died between feeding and sampling
            return entry, []
        return entry, entry.greedy_continuation(prompt)

    def _replay(self, replay: list[int], prompt: list[int], run: _Run) -> Emitting:
        """The user typed into the previous ghost text: yield its remaining ids (what greedy decoding
        gives) without the model; returns "stop" / "length", or None to go on decoding."""
        self.cache.lookups += 1
        self.cache.hits += 1
        self.cache.prompt_tokens += len(prompt)
        self.cache.reused_tokens += len(prompt)
        self.last_stats.reused_tokens = len(prompt)
        for token in replay:
            if token in run.stop_ids:
                return "stop"
            self.last_stats.replayed_tokens += 1
            run.produced += 1
            yield token
            if run.remaining == 0:
                return "length"
        return None

    def _resume(self, entry: CacheEntry, run: _Run) -> Step | None:
        """After a replay: feed the pending id at the end of the entry; None when the context is full."""
        pos, max_seq_len = len(entry.tokens), self.model.cfg.max_seq_len
        if pos + 1 >= max_seq_len:
            return None
        self.cache.ensure_capacity(entry, min(pos + 1 + run.remaining, max_seq_len))
        return self._feed(entry, [entry.pending], [], pos, run)

    def _prefill(self, prompt: list[int], run: _Run) -> tuple[CacheEntry, Step]:
        """Feed the prompt past its longest cached prefix (the last id always: its logits are needed);
        a greedy request with a short tail also carries a draft of the first new ids."""
        n_new = run.params.max_new_tokens
        entry, reused = self.cache.acquire(prompt, len(prompt) + n_new)
        reused = min(reused, len(prompt) - 1)
        entry.truncate(reused)
        self.last_stats.reused_tokens = reused
        tail = prompt[reused:]
        draft = []
        if run.greedy and len(tail) <= _DRAFT_WITH_PREFILL_MAX:
            draft = self._draft(prompt, n_new - 1, entry.capacity - len(prompt))
        entry.greedy_from, entry.pending = (len(prompt), None) if run.replayable else (None, None)
        step = self._feed(entry, tail, draft, reused, run)
        self.last_stats.prefill_seconds = time.perf_counter() - run.started
        return entry, step

    def _emit(self, entry: CacheEntry, queued: list[int], token: int, run: _Run) -> Emitting:
        """Yield the accepted draft ids, then the sampled token; returns a stop reason or None."""
        for out in queued:
            reason = yield from run.emit(out)
            if reason is not None:
                return reason
        if run.replayable:
            entry.pending = token  # chosen, not yet fed: the end of the greedy continuation
        return (yield from run.emit(token))

    def _decode(self, entry: CacheEntry, token: int, run: _Run) -> Step | None:
        """Feed the sampled token (greedy: with a draft after it); None when the context is full."""
        pos = len(entry.tokens)
        if pos + 1 > self.model.cfg.max_seq_len or not self.cache.ensure_capacity(entry, pos + 1):
            return None
        draft = []
        if run.greedy:
            entry.tokens.append(token)  # the context a draft continues (no copy of the list)
            draft = self._draft(entry.tokens, run.remaining - 1, entry.capacity - pos - 1)
            entry.tokens.pop()
        return self._feed(entry, [token], draft, pos, run)

    # ------------------------------------------------------------------ the model

    def _feed(self, entry: CacheEntry, fed: list[int], draft: list[int], pos: int, run: _Run) -> Step:
        """Write fed (+ draft) at positions pos..; (accepted draft ids, logits (V,) for the id after them)."""
        if draft:
            return self._speculate(entry, fed, draft, pos, run.penalty)
        logits = self._logits(entry, fed, pos)
        entry.tokens.extend(fed)
        entry.pending = None  # what was pending is fed now
        return [], logits

    def _logits(self, entry: CacheEntry, ids: list[int], start_pos: int) -> torch.Tensor:
        """Feed ids at start_pos..; logits (V,) after the last one, the vocabulary masked."""
        if self.decoder is not None and len(ids) == 1:
            logits = self.decoder(ids[0], start_pos, entry.kv)  # (V,)
        elif self.decoder is not None and len(ids) <= _FUSED_PREFILL_MAX:
            logits = self.decoder.prefill(ids, start_pos, entry.kv)  # (V,)
        else:
            x = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
            logits = forward_last(self.model, x, entry.kv, start_pos)  # (V,)
        return mask_vocab(logits, self.vocab_size)

    def _draft(self, context: list[int], max_tokens: int, room: int) -> list[int]:
        """A guess at the next ids (prompt lookup), at most max_draft_tokens / max_tokens / room of them."""
        limit = min(self.max_draft_tokens, max_tokens, room)
        if self.decoder is None or limit <= 0:
            return []
        return self.drafter(context, limit)

    def _speculate(self, entry: CacheEntry, fed: list[int], draft: list[int], pos: int,
                   penalty: Penalty | None) -> Step:
        """Feed fed + draft at pos.. in one pass (greedy only); keep the drafted ids argmax picks anyway
        (of the logits as penalized after each drafted id, when the request has a penalty).

        Returns (accepted draft ids, logits (V,) for the id after them). entry.tokens grows by fed and the
        accepted ids; KV written for rejected ids lies past entry.tokens and is overwritten later.
        """
        rows = self.decoder.verify(fed + draft, pos, entry.kv, len(fed) - 1)  # (1 + d, V): after fed[-1], draft[i]
        rows = mask_vocab(rows, self.vocab_size)
        chosen = (penalty.apply_rows(rows, draft) if penalty else rows).argmax(-1).tolist()  # after draft[:i]
        accepted = accept_draft(entry, fed, draft, chosen)  # greedy continuation: tokens[greedy_from:] + [pending]
        self.drafted_tokens += len(draft)
        self.accepted_tokens += accepted
        return draft[:accepted], rows[accepted]
