"""Prefix-KV reuse across requests: a bounded LRU of KV buffers keyed by the token ids they hold.

An editor sends a request on nearly every keystroke with (almost) the same long prompt. Each entry
keeps one preallocated KV buffer (a list of per-layer `KVCache`, position p at [:, :, p]) and the ids
whose keys/values are stored there. A new prompt picks the entry with the longest common token
prefix, keeps that part of the buffer and recomputes only the rest: no copy, later positions are
simply overwritten.

Greedy replay: when an entry was extended by greedy decoding, `greedy_from` marks where the greedy
tokens start; a later greedy request whose prompt ends inside that region (the user typed what the
ghost text showed) gets the remaining tokens without running the model, since greedy decoding of
the same ids over the same keys/values is deterministic.

Example:
    cache = PrefixCache(model, max_entries=4)
    entry, reused = cache.acquire(prompt_ids, capacity=len(prompt_ids) + 64)
    # entry.kv holds valid keys/values for prompt_ids[:reused]; feed the rest at start_pos=reused
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from lightcoder.model.llama import KVCache, Transformer

_ALLOC_STEP = 256  # capacity is rounded up to this many positions, so short growth needs no realloc


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix. Example: common_prefix_len([1, 2, 3], [1, 2, 5]) -> 2"""
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first: prompts share thousands of ids, Python list slices compare in C.
    step = 256
    while i + step <= n and a[i:i + step] == b[i:i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False)
class CacheEntry:
    kv: list[KVCache]  # one per layer, (1, K, capacity, Hd) each
    tokens: list[int] = field(default_factory=list)  # ids whose KV is stored at positions 0..len-1
    # Greedy continuation: tokens[greedy_from:] + [pending] were chosen by argmax given all ids before
    # them (None: no greedy region). `pending` is the last chosen id, never fed (a stop id, or the end).
    greedy_from: int | None = None
    pending: int | None = None
    last_used: int = 0

    @property
    def capacity(self) -> int:
        return self.kv[0].max_len

    @property
    def nbytes(self) -> int:
        return sum(c.k.numel() * c.k.element_size() * 2 for c in self.kv)

    def truncate(self, n: int) -> None:
        """Keep the KV of the first n ids only (the rest is overwritten by later writes)."""
        del self.tokens[n:]
        if self.greedy_from is not None and n < self.greedy_from:
            self.greedy_from, self.pending = None, None

    def greedy_continuation(self, prompt: list[int]) -> list[int]:
        """Ids greedy decoding would produce after `prompt`, known without the model ([] if none)."""
        if self.greedy_from is None or len(prompt) < self.greedy_from:
            return []
        full = self.tokens + ([self.pending] if self.pending is not None else [])
        if len(prompt) >= len(full) or full[:len(prompt)] != prompt:
            return []
        return full[len(prompt):]


class PrefixCache:
    """At most max_entries KV buffers (and at most max_bytes of them); least recently used goes first."""

    def __init__(self, model: Transformer, *, max_entries: int = 8, max_bytes: int = 2 << 30,
                 min_shared_fraction: float = 0.5):
        if max_entries < 1:
            raise ValueError(f"PrefixCache max_entries must be >= 1, got {max_entries}")
        self.model = model
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # Reuse an entry only when the shared part is at least this fraction of what it holds;
        # otherwise a new entry is taken, so another file's session survives.
        self.min_shared_fraction = min_shared_fraction
        self.entries: list[CacheEntry] = []
        self._clock = 0
        self.hits = 0  # acquires that reused at least one position
        self.lookups = 0
        self.reused_tokens = 0
        self.prompt_tokens = 0

    def best_match(self, prompt: list[int], busy: Collection[CacheEntry] = ()) -> tuple[CacheEntry | None, int]:
        """The entry (not in `busy`) sharing the longest token prefix with prompt, and that length."""
        best, best_len = None, 0
        for entry in self.entries:
            if entry in busy:
                continue
            n = common_prefix_len(entry.tokens, prompt)
            if n > best_len:
                best, best_len = entry, n
        return best, best_len

    def acquire(self, prompt: list[int], capacity: int, busy: Collection[CacheEntry] = ()) -> tuple[CacheEntry, int]:
        """An entry to decode `prompt` in, with room for `capacity` positions; (entry, reusable ids).

        The entry's KV is valid for prompt[:reusable]; the caller feeds the rest and updates
        entry.tokens as it writes positions. Entries in `busy` (in use by running requests of the
        batch scheduler) are neither matched nor recycled; max_entries must exceed len(busy).
        """
        capacity = min(-(-capacity // _ALLOC_STEP) * _ALLOC_STEP, self.model.cfg.max_seq_len)
        self._clock += 1
        self.lookups += 1
        self.prompt_tokens += len(prompt)
        entry, shared = self.best_match(prompt, busy)
        if entry is not None and shared < self.min_shared_fraction * len(entry.tokens) and \
                len(self.entries) < self.max_entries:
            entry, shared = None, 0  # keep that session; start a new one
        if entry is None:
            entry = self._new_entry(capacity, busy)
            shared = 0
        else:
            entry.truncate(shared)
            if entry.capacity < capacity:
                self._grow(entry, capacity)
        entry.last_used = self._clock
        if shared:
            self.hits += 1
            self.reused_tokens += shared
        return entry, shared

    def _new_entry(self, capacity: int, busy: Collection[CacheEntry] = ()) -> CacheEntry:
        free = [e for e in self.entries if e not in busy]
        if len(self.entries) >= self.max_entries and free:
            # Recycle the least recently used buffer when it is big enough; else drop it.
            victim = min(free, key=lambda e: e.last_used)
            self.entries.remove(victim)
            if victim.capacity >= capacity:
                victim.truncate(0)
                self.entries.append(victim)
                return victim
        entry = CacheEntry(kv=self.model.init_kv_cache(1, capacity))
        self.entries.append(entry)
        while len(self.entries) > 1 and sum(e.nbytes for e in self.entries) > self.max_bytes:
            victims = [e for e in self.entries if e is not entry and e not in busy]
            if not victims:
                break
            self.entries.remove(min(victims, key=lambda e: e.last_used))
        return entry

    def ensure_capacity(self, entry: CacheEntry, capacity: int) -> bool:
        """Grow entry to hold `capacity` positions (rounded up, at most max_seq_len); False if it cannot."""
        if entry.capacity >= capacity:
            return True
        if capacity > self.model.cfg.max_seq_len:
            return False
        self._grow(entry, min(-(-capacity // _ALLOC_STEP) * _ALLOC_STEP, self.model.cfg.max_seq_len))
        return True

    def _grow(self, entry: CacheEntry, capacity: int) -> None:
        n = len(entry.tokens)
        new = self.model.init_kv_cache(1, capacity)
        for old, fresh in zip(entry.kv, new):  # copy the valid positions (1, K, n, Hd)
            fresh.k[:, :, :n] = old.k[:, :, :n]
            fresh.v[:, :, :n] = old.v[:, :, :n]
        entry.kv = new

    def clear(self) -> None:
        self.entries.clear()

    def stats(self) -> dict:
        return {
            "entries": len(self.entries),
            "bytes": sum(e.nbytes for e in self.entries),
            "lookups": self.lookups,
            "hits": self.hits,
            "hit_rate": self.hits / self.lookups if self.lookups else 0.0,
            "reused_token_fraction": self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0,
        }
