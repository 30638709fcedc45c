"""An n-gram cache mixed into the model's next-id choice: the code around the cursor as a copy memory
that a small model lacks.

A cache language model (Tu et al. 2014; Grave et al. 2017's neural version) counts what followed each
short context in recent text and mixes those counts into the model's distribution. Code repeats its own
names and idioms, and a model of a few million parameters copies them from its context only weakly.
At each step the longest context of `min_order`..`max_order` ids (the prompt's end plus what is
generated) that occurs in a source gives a next-id distribution q:

    mixed[v] = (1 - a) * p[v] + a * (1 - p[stop]) * q[v]      for every non-stop id v
    a = weight * C / (C + T)     C = times the context occurs, T = distinct ids after it (Witten-Bell)

The cache decides *what* to write, not *when to stop*: the stop ids keep their odds against the best
other id (their logit moves by as much as the best non-stop id's), so greedy decoding ends exactly where
the model alone would end after the same ids. Measured in docs/evaluation.md ("An n-gram cache").

The source is the text the request carries around the cursor, prefix and suffix whole (up to
infer/completer.CACHE_SOURCE_CHARS each side), also where the prompt keeps only their ends (an `NgramCache`
built per request, about a millisecond). A repository as a
second source (the `--workspace` files) was measured and left out: docs/finetune.md.

Example: cache = NgramCache([5, 6, 7, 8, 5, 6, 7, 9]); cache.followers([5, 6, 7], min_order=3)
    -> (3, {8: 1, 9: 1})
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
import numpy as np
import torch

from lightcoder.infer.penalties import check_cache_weight

MAX_ORDER = 6  # longest context looked up (ids)
MIN_ORDER = 3  # shorter matches are too common to say anything about this file


class NgramCache:
    """Every position of a token stream, sorted by the ids before it read backwards (the last id first),
    so the positions after any context of up to `max_order` ids form one contiguous range."""

    def __init__(self, ids: Sequence[int], max_order: int = MAX_ORDER):
        if max_order < 1:
            raise ValueError(f"max_order must be >= 1, got {max_order}")
        stream = np.asarray(ids, dtype=np.int32)  # (max_order + 1) * 4 bytes an id: 28 kB for a 1,000-id prompt
        n = len(stream) - 1  # positions 1..len-1 have an id before them
        self.max_order = max_order
        # before[j][i]: the id j + 1 places before position i + 1 (-1 before the stream's start); (max_order, n)
        before = np.full((max_order, max(n, 0)), -1, dtype=np.int32)
        for j in range(max_order):
            if n - j > 0:
                before[j, j:] = stream[: n - j]
        # positions that end a file (next -1) or start one (nothing before) hold nothing to look up
        keep = np.flatnonzero((stream[1:] >= 0) & (before[0] >= 0)) if n > 0 else np.zeros(0, dtype=np.int64)
        order = keep[np.lexsort(before[::-1, keep])]  # before[0] is the primary key
        self.before = before[:, order]
        self.next_ids = stream[1:][order]

    @classmethod
    def from_texts(cls, texts: Sequence[str], encode, max_order: int = MAX_ORDER) -> NgramCache:
        """One cache over several texts (a prefix and a suffix), each encoded (see `joined`)."""
        return cls.joined([encode(text) for text in texts], max_order)

    @classmethod
    def joined(cls, id_lists: Sequence[Sequence[int]], max_order: int = MAX_ORDER) -> NgramCache:
        """One cache over several id sequences, joined with a -1 between them, which no context holds, so
        no match crosses from one to the next."""
        stream: list[int] = []
        for ids in id_lists:
            stream += [*ids, -1]
        return cls(stream, max_order)

    def __len__(self) -> int:
        return len(self.next_ids)

    def _range(self, context: Sequence[int]) -> tuple[int, int, int]:
        """(matched order, lo, hi): the positions after the longest suffix of context the stream holds."""
        lo, hi, matched = 0, len(self.next_ids), 0
        for j in range(min(self.max_order, len(context))):
            column = self.before[j, lo:hi]
            value = context[-1 - j]
            a, b = np.searchsorted(column, value, "left"), np.searchsorted(column, value, "right")
            if a == b:
                break
            lo, hi, matched = lo + int(a), lo + int(b), j + 1
        return matched, lo, hi

    def followers(self, context: Sequence[int], *, min_order: int = MIN_ORDER) -> tuple[int, dict[int, int]]:
        """(order, {next id: count}) for the longest suffix of context (at least min_order ids) seen here;
        (0, {}) when none is."""
        matched, lo, hi = self._range(context)
        if matched < min_order or lo == hi:
            return 0, {}
        ids, counts = np.unique(self.next_ids[lo:hi], return_counts=True)
        return matched, {int(i): int(c) for i, c in zip(ids, counts)}


@dataclass(frozen=True)
class CacheMix:
    """One request's cache: its source, the weight and the prompt's last ids (the first context)."""

    source: NgramCache
    weight: float
    prompt_tail: tuple[int, ...]
    min_order: int = MIN_ORDER

    def __post_init__(self) -> None:
        check_cache_weight(self.weight)
        if not 1 <= self.min_order <= self.source.max_order:
            raise ValueError(f"CacheMix.min_order must be in 1..{self.source.max_order} (the source's longest "
                             f"context), got {self.min_order!r}")

    @classmethod
    def for_prompt(cls, prompt_ids: Sequence[int], weight: float, source: NgramCache | None = None, *,
                   tail: Sequence[int] | None = None) -> CacheMix:
        """The code around the cursor as the source (default: the prompt's own ids). tail: the ids the
        completion continues (default: the prompt's last ids; a PSM prompt ends with the middle token
        instead, so there the caller passes the prefix's last ids)."""
        source = NgramCache(prompt_ids) if source is None else source
        tail = prompt_ids if tail is None else tail
        return cls(source=source, weight=weight, prompt_tail=tuple(tail[-MAX_ORDER:]))

    def apply(self, logits: torch.Tensor, generated: Sequence[int], stop_ids: Collection[int]) -> torch.Tensor:
        """logits (V,) with the cache mixed in (module docstring); a copy, or logits itself when no context
        matches."""
        _, followers = self.source.followers([*self.prompt_tail, *generated], min_order=self.min_order)
        followers = {t: c for t, c in followers.items() if t < logits.numel() and t not in stop_ids}
        if not followers or not self.weight:
            return logits
        total = sum(followers.values())
        share = self.weight * total / (total + len(followers))
        p = torch.softmax(logits.float(), -1)
        stops = torch.tensor(sorted(s for s in stop_ids if s < logits.numel()), dtype=torch.long, device=p.device)
        others = torch.ones_like(p, dtype=torch.bool)
        others[stops] = False
        p_stop = p[stops].sum()
        q = torch.zeros_like(p)
        q[torch.tensor(list(followers), device=p.device)] = p.new_tensor(list(followers.values())) / total
        q = q.masked_fill(p == 0, 0.0)  # an id the decoder masked (-inf) stays impossible however often it follows
        mixed = torch.log((1 - share) * p + share * (1 - p_stop) * q)  # masked ids (p 0, q 0) stay -inf
        if len(stops):  # the stops keep their odds against the best other id
            lift = mixed[others].max() - torch.log(p[others].max())
            mixed[stops] = torch.log(p[stops]) + lift
        return mixed.to(logits.dtype)

