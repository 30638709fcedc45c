"""Repository balance: sample repositories with a temperature over their bytes (pack.repo_temperature).

A corpus is rarely even: in the Python standard library, CPython's `test` package holds 63 % of the
bytes, so a model trained on it mostly learns to write unit tests. With temperature t, repository r's
share of the packed bytes becomes proportional to size_r ** t (t = 1: as found; t = 0: every repository
equal), and the total stays the corpus size. A repository then appears m_r times (its multiplier):

    m_r = (size_r ** t / sum_s size_s ** t) * total / size_r,   capped at max_repeats

m_r < 1 keeps a seeded random subset of the repository's files, in their stream order, that holds
m_r of its bytes; m_r >= 1 repeats the ordered files floor(m_r) times plus such a subset. Each repeat
has its own index, so its FIM spans are drawn anew (packing.file_rng) while NTP text repeats verbatim.

Example: sizes {"big": 900, "a": 50, "b": 50}, t = 0 -> multipliers {"big": 0.37, "a": 6.67 -> 4 (cap), ...}
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lightcoder.data.records import SourceFile


def repo_multipliers(sizes: dict[str, int], temperature: float, max_repeats: float) -> dict[str, float]:
    """m_r per repository (see the module docstring); repositories of size 0 get 0."""
    if not 0.0 <= temperature <= 1.0:
        raise ValueError(f"pack.repo_temperature must be in [0, 1], got {temperature}")
    weights = {r: s ** temperature for r, s in sizes.items() if s > 0}
    total, weight_sum = sum(sizes.values()), sum(weights.values())
    return {r: min(max_repeats, weights[r] / weight_sum * total / s) if s > 0 else 0.0
            for r, s in sizes.items()}


def file_bytes(f: SourceFile) -> int:
    return len(f.content.encode("utf-8", "surrogatepass"))


def balance_repo(files: Sequence[SourceFile], multiplier: float, rng: random.Random) -> list[tuple[SourceFile, int]]:
    """(file, repeat index) pairs of one repository's ordered files under its multiplier.

    Example: balance_repo([a, b, c], 2.0, rng) -> [(a, 0), (b, 0), (c, 0), (a, 1), (b, 1), (c, 1)]
    """
    whole = int(multiplier)
    out = [(f, r) for r in range(whole) for f in files]
    target = (multiplier - whole) * sum(file_bytes(f) for f in files)
    order = list(range(len(files)))
    rng.shuffle(order)
    kept, size = set(), 0
    for i in order:
        if size >= target:
            break
        kept.add(i)
        size += file_bytes(files[i])
    return out + [(files[i], whole) for i in sorted(kept)]


def share_summary(sizes: dict[str, int], top: int = 5) -> dict:
    """{"max_share", "top": [[repo, share], ...]} of a {repo: bytes} map (shares in 0..1)."""
    total = sum(sizes.values()) or 1
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"max_share": round(ranked[0][1] / total, 4) if ranked else 0.0,
            "top": [[r, round(s / total, 4)] for r, s in ranked[:top]]}
