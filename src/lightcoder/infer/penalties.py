"""Frequency and presence penalties: OpenAI's `/v1/completions` parameters, applied as vLLM does.

Each id this request has generated so far (not the prompt) lowers its own logit:

    logits[v] -= frequency * count[v] + presence * (count[v] > 0)

A small greedy model falls into loops (`import os` forty times, a docstring that repeats one phrase)
instead of ending the middle; a penalty on what it already wrote makes `</s>` win sooner
(docs/evaluation.md measures it). The prompt is not penalized: code repeats its context's names
all the time, and the suffix is exactly what a middle must lead into.

An n-gram cache (infer/ngram_cache.py) rides along too: the penalized logits are mixed with what followed
the same context in the text around the cursor, before the stop guard.

A stop guard (infer/stop_guard.py) rides along: a rule over the ids generated so far that, while it
holds, takes the stop ids out of the choice (their logits -inf), so every decoding path that applies
penalties also keeps an output from ending where the rule forbids.

Example: penalty = Penalty(frequency=0.5, presence=0.0); penalty.add(7); penalty.add(7)
    penalty.apply(logits)[7] == logits[7] - 1.0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the module itself needs no torch import: the configs validate with check_penalties
    import torch

    from lightcoder.infer.ngram_cache import CacheMix

LIMIT = 2.0  # OpenAI's range for both: [-2, 2]
DEFAULT_CACHE_WEIGHT = 0.3  # the n-gram cache's (ngram_cache.py) in the run's eval and so the server; docs/evaluation.md
StopGuard = Callable[[Sequence[int]], bool]  # the ids generated so far -> must the output go on?


def check_penalties(frequency: float, presence: float, *, prefix: str = "") -> None:
    """ValueError unless both are numbers in [-LIMIT, LIMIT] (OpenAI's range); prefix names the config
    section in the message (e.g. "eval.")."""
    for name, value in (("frequency_penalty", frequency), ("presence_penalty", presence)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -LIMIT <= value <= LIMIT:
            raise ValueError(f"{prefix}{name} must be a number in [-{LIMIT:g}, {LIMIT:g}] (OpenAI's range), "
                             f"got {value!r}")


def check_cache_weight(weight: float, *, prefix: str = "") -> None:
    """ValueError unless weight is a number in [0, 1): the n-gram cache's weight (infer/ngram_cache.py)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < 1:
        raise ValueError(f"{prefix}cache_weight must be a number in [0, 1) (0 turns the n-gram cache off), "
                         f"got {weight!r}")


class Penalty:
    """The ids one request has generated, and the logits they change (see module docstring)."""

    def __init__(self, *, frequency: float, presence: float, stop_guard: StopGuard | None = None,
                 stop_ids: Collection[int] = (), cache: CacheMix | None = None):
        check_penalties(frequency, presence)
        self.frequency, self.presence = float(frequency), float(presence)
        self.cache = cache
        self.counts: Counter[int] = Counter()
        self.generated: list[int] = []
        self.stop_guard, self.stop_ids = stop_guard, sorted(stop_ids)

    @classmethod
    def of(cls, frequency: float, presence: float, stop_guard: StopGuard | None = None,
           stop_ids: Collection[int] = (), cache: CacheMix | None = None) -> Penalty | None:
        """A Penalty, or None when both are 0 and there is neither a stop guard nor an n-gram cache
        (decoding is then exactly as without penalties)."""
        if not (frequency or presence or (stop_guard and stop_ids) or (cache and cache.weight)):
            return None
        return cls(frequency=frequency, presence=presence, stop_guard=stop_guard, stop_ids=stop_ids, cache=cache)

    def add(self, token: int) -> None:
        self.counts[token] += 1
        self.generated.append(token)

    def apply(self, logits: torch.Tensor, ahead: Sequence[int] = ()) -> torch.Tensor:
        """A penalized copy of logits (V,), counting `ahead` (ids generated but not yet added) too."""
        out = logits
        counts = self.counts + Counter(ahead) if ahead else self.counts
        if counts and (self.frequency or self.presence):
            ids = logits.new_tensor(list(counts)).long()
            n = logits.new_tensor(list(counts.values()))
            out = logits.clone()
            out[ids] -= self.frequency * n + self.presence
        if self.cache is not None:
            out = self.cache.apply(out, [*self.generated, *ahead], self.stop_ids)
        if self.stop_guard and self.stop_ids and self.stop_guard([*self.generated, *ahead]):
            out = out.clone() if out is logits else out
            out[self.stop_ids] = float("-inf")
        return out

    def apply_rows(self, rows: torch.Tensor, draft: Sequence[int]) -> torch.Tensor:
        """rows (1 + len(draft), V), row i the logits after draft[:i]: each penalized as sequential
        decoding would see it, with draft[:i] counted as generated."""
        out = rows.clone()
        for i in range(rows.size(0)):
            out[i] = self.apply(rows[i], draft[:i])
        return out
