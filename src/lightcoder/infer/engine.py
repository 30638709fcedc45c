"""Token-level generation: prefill, decode one token at a time with a preallocated KV cache, sample.

The engine knows nothing about text or tokenizers (prompts.py builds ids, completer.py decodes).

Example:
    for token in generate(model, ids, max_new_tokens=64, stop_ids={2}):
        print(token)
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterator

import torch

from lightcoder.infer.draft import prompt_lookup_draft
from lightcoder.infer.fused_decode import FusedDecoder
from lightcoder.infer.prefix_cache import CacheEntry, PrefixCache
from lightcoder.model.llama import KVCache, Transformer

STOP_REASONS = ("stop", "length", "max_seq_len", "time", "cancelled")
_FUSED_PREFILL_MAX = 256  # prompt tails up to this long go through the fused path; longer: the model
_DRAFT_WITH_PREFILL_MAX = 32  # prompt tails up to this long also carry a draft of the first new ids


def sample_next(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> int:
    """Next token id from logits (V,): argmax when temperature == 0, else a draw from the
    temperature-scaled distribution restricted to the top_k tokens (0 = all) and to the smallest
    set whose probability reaches top_p (1.0 = all). The draw uses `rng` only."""
    if temperature < 0 or top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
    if temperature == 0:
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


def _last_logits_keyword(model: Transformer) -> str | None:
    """The forward() keyword that computes logits at the last position only, if the model has one."""
    params = inspect.signature(type(model).forward).parameters
    return next((k for k in ("last_logits_only", "last_only") if k in params), None)


def forward_last(model: Transformer, tokens: torch.Tensor, kv_cache: list[KVCache], start_pos: int) -> torch.Tensor:
    """tokens (1, T) at positions start_pos.. -> logits (V,) of the last position only (no (T, V) matmul)."""
    key = _last_logits_keyword(model)
    if key is None:
        return model(tokens, kv_cache=kv_cache, start_pos=start_pos)[0, -1]
    return model(tokens, kv_cache=kv_cache, start_pos=start_pos, **{key: True})[0, -1]


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
) -> Iterator[int]:
    """Yield up to max_new_tokens new token ids; stops before yielding a stop id.

    vocab_size: when the tokenizer knows fewer ids than the model's (padded) vocabulary, only ids
    below it are ever produced (aiXcoder-7B pads its vocabulary to 49152).

    The generator's return value (StopIteration.value) says why it ended: "stop" (a stop id),
    "length" (max_new_tokens reached) or "max_seq_len" (the model's context is full).
    Sampling without an rng uses a generator seeded with 0, so runs are reproducible.
    """
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; a prompt starts at least with <s>")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    max_seq_len = model.cfg.max_seq_len
    if len(prompt_ids) >= max_seq_len:
        raise ValueError(
            f"prompt of {len(prompt_ids)} tokens leaves no room in max_seq_len {max_seq_len}; "
            "lower the prompt budget (PromptConfig.max_prompt_tokens)"
        )
    if max_new_tokens == 0:
        return "length"
    if temperature > 0 and rng is None:
        rng = torch.Generator().manual_seed(0)
    device = model.output.weight.device
    kv_cache = model.init_kv_cache(1, min(len(prompt_ids) + max_new_tokens, max_seq_len))
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    logits = prefill(model, prompt, kv_cache)
    pos = len(prompt_ids)
    stop_ids = frozenset(stop_ids)
    for i in range(max_new_tokens):
        if vocab_size is not None and vocab_size < logits.size(-1):
            logits[..., vocab_size:] = float("-inf")  # ids no tokenizer can decode
        token = sample_next(logits, temperature, top_k, top_p, rng)
        if token in stop_ids:
            return "stop"
        yield token
        if i + 1 == max_new_tokens:
            return "length"
        if pos >= kv_cache[0].max_len:
            return "max_seq_len"
        logits = decode_one(model, token, pos, kv_cache)
        pos += 1
    return "length"


# ---------------------------------------------------------------------------------------------
# The serving engine: generate() plus prefix-KV reuse, replay, deadlines and cancellation


@dataclass(kw_only=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_ids: Collection[int] = ()
    max_seconds: float | None = None  # stop with reason "time" once this much wall time has passed

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got "
                             f"{self.temperature}, {self.top_k}, {self.top_p}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0 (or None), got {self.max_seconds}")


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt ids whose keys/values came from the prefix cache
    replayed_tokens: int = 0  # new ids taken from a cached greedy continuation (no model call)
    prefill_seconds: float = 0.0


class Engine:
    """One model, one prefix cache; `generate` yields ids and returns a reason from STOP_REASONS.

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

    def _logits(self, entry: CacheEntry, ids: list[int], start_pos: int) -> torch.Tensor:
        if self.decoder is not None and len(ids) == 1:
            logits = self.decoder(ids[0], start_pos, entry.kv)  # (V,)
        elif self.decoder is not None and len(ids) <= _FUSED_PREFILL_MAX:
            logits = self.decoder.prefill(ids, start_pos, entry.kv)  # (V,)
        else:
            x = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
            logits = forward_last(self.model, x, entry.kv, start_pos)  # (V,)
        if self.vocab_size is not None and self.vocab_size < logits.size(-1):
            logits[self.vocab_size:] = float("-inf")  # ids no tokenizer can decode
        return logits

    def _draft(self, context: list[int], max_tokens: int, room: int) -> list[int]:
        """A guess at the next ids (prompt lookup), at most max_draft_tokens / max_tokens / room of them."""
        limit = min(self.max_draft_tokens, max_tokens, room)
        if self.decoder is None or limit <= 0:
            return []
        return self.drafter(context, limit)

    def _speculate(self, entry: CacheEntry, fed: list[int], draft: list[int], pos: int) -> tuple[list[int], torch.Tensor]:
        """Feed fed + draft at pos.. in one pass (greedy only); keep the drafted ids argmax picks anyway.

        Returns (accepted draft ids, logits (V,) for the id after them). entry.tokens grows by fed and the
        accepted ids; KV written for rejected ids lies past entry.tokens and is overwritten later.
        """
        rows = self.decoder.verify(fed + draft, pos, entry.kv, len(fed) - 1)  # (1 + d, V): after fed[-1], draft[i]
        if self.vocab_size is not None and self.vocab_size < rows.size(-1):
            rows[:, self.vocab_size:] = float("-inf")  # ids no tokenizer can decode
        chosen = rows.argmax(-1).tolist()  # chosen[i]: the greedy id after draft[:i]
        accepted = 0
        while accepted < len(draft) and draft[accepted] == chosen[accepted]:
            accepted += 1
        self.drafted_tokens += len(draft)
        self.accepted_tokens += accepted
        entry.tokens.extend(fed)
        entry.tokens.extend(draft[:accepted])
        entry.pending = chosen[accepted]  # greedy continuation: tokens[greedy_from:] + [pending]
        return draft[:accepted], rows[accepted]

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], params: SamplingParams, *,
                 cancelled: Callable[[], bool] | None = None) -> Iterator[int]:
        """Yield new ids; stops before yielding a stop id. Same tokens as the module-level generate()
        for greedy decoding, whatever the cache holds."""
        prompt = list(prompt_ids)
        if not prompt:
            raise ValueError("prompt_ids is empty; a prompt starts at least with <s>")
        max_seq_len = self.model.cfg.max_seq_len
        if len(prompt) >= max_seq_len:
            raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in max_seq_len {max_seq_len}; "
                             "lower the prompt budget (PromptConfig.max_prompt_tokens)")
        stats = self.last_stats = GenerationStats(prompt_tokens=len(prompt))
        if params.max_new_tokens == 0:
            return "length"
        start = time.perf_counter()
        deadline = None if params.max_seconds is None else start + params.max_seconds
        stop_ids = frozenset(params.stop_ids)
        greedy = params.temperature == 0
        rng = None if greedy else torch.Generator().manual_seed(params.seed)
        produced = 0
        queued: list[int] = []  # accepted drafted ids, fed but not yet emitted

        entry, _ = self.cache.best_match(prompt)
        replay = entry.greedy_continuation(prompt) if (greedy and entry is not None) else []
        if replay and entry.pending is None:  # a run that died between feeding and sampling
            replay = []
        if replay:
            # The user typed into the previous ghost text: its remaining ids are what greedy decoding gives.
            self.cache.lookups += 1
            self.cache.hits += 1
            self.cache.prompt_tokens += len(prompt)
            self.cache.reused_tokens += len(prompt)
            stats.reused_tokens = len(prompt)
            for token in replay:
                if token in stop_ids:
                    return "stop"
                stats.replayed_tokens += 1
                produced += 1
                yield token
                if produced == params.max_new_tokens:
                    return "length"
            # Continue after the cached ids: feed the pending id at the end of the entry.
            pos, feed = len(entry.tokens), entry.pending
            if pos + 1 >= max_seq_len:
                return "max_seq_len"
            self.cache.ensure_capacity(entry, min(pos + 1 + params.max_new_tokens - produced, max_seq_len))
            logits = self._logits(entry, [feed], pos)
            entry.tokens.append(feed)
            entry.pending = None
        else:
            entry, reused = self.cache.acquire(prompt, len(prompt) + params.max_new_tokens)
            reused = min(reused, len(prompt) - 1)  # the last prompt id is always fed: its logits are needed
            entry.truncate(reused)
            stats.reused_tokens = reused
            tail = prompt[reused:]
            draft = []
            if greedy and len(tail) <= _DRAFT_WITH_PREFILL_MAX:  # guess the first new ids in the same pass
                draft = self._draft(prompt, params.max_new_tokens - 1, entry.capacity - len(prompt))
            entry.greedy_from, entry.pending = (len(prompt), None) if greedy else (None, None)
            if draft:
                queued, logits = self._speculate(entry, tail, draft, reused)
            else:
                logits = self._logits(entry, tail, reused)
                entry.tokens.extend(tail)
            stats.prefill_seconds = time.perf_counter() - start

        def stop_reason_after_emit() -> str | None:
            """Why generation ends after the token just emitted (None: go on)."""
            if produced >= params.max_new_tokens:
                return "length"
            if cancelled is not None and cancelled():
                return "cancelled"
            if deadline is not None and time.perf_counter() >= deadline:
                return "time"
            return None

        while True:
            # drafted ids greedy decoding accepted (already fed), then one freshly sampled id
            token = sample_next(logits, params.temperature, params.top_k, params.top_p, rng)
            for i, out in enumerate([*queued, token]):
                if i == len(queued) and greedy:
                    entry.pending = token
                if out in stop_ids:
                    return "stop"
                produced += 1
                yield out
                reason = stop_reason_after_emit()
                if reason is not None:
                    return reason
            queued = []
            pos = len(entry.tokens)
            if pos + 1 > max_seq_len:
                return "max_seq_len"
            if not self.cache.ensure_capacity(entry, pos + 1):
                return "max_seq_len"
            entry.tokens.append(token)  # the context a draft continues
            draft = self._draft(entry.tokens, params.max_new_tokens - produced - 1, entry.capacity - pos - 1) \
                if greedy else []
            entry.tokens.pop()
            if draft:
                queued, logits = self._speculate(entry, [token], draft, pos)
            else:
                logits = self._logits(entry, [token], pos)
                entry.tokens.append(token)
                entry.pending = None
