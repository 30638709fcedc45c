"""Repository-level file ordering (aiXcoder §4): "globally random, locally similar/dependent".

Packing concatenates a repository's files in the order chosen here, so related files sit next to
each other in the token stream and the model learns to use cross-file context. Strategies live in
`STRATEGIES` (name -> function(files, rng) -> files); aiXcoder uses four:

    content     TF-IDF over identifiers, nearest-neighbour chains (k-means first for big repos)
                (repo_order/content.py)
    path        directory groups in random order, files in path order inside a group
    dependency  tree-sitter import/include graph resolved to repository files, dependencies
                first, cycles broken (repo_order/dependency.py)
    random      a shuffle

Packing draws one strategy per repository from configured weights (`choose_strategy`; the names
and DEFAULT_WEIGHTS live in pack_config.py, STRATEGY_NAMES lists the keys of STRATEGIES; aiXcoder publishes no proportions; research/aixcoder-7b.md §4.2 placeholders).
Every function is pure: it returns a new list and draws randomness only from the given rng.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from lightcoder.pack_config import check_sampling_weights
from lightcoder.repo_order.content import order_by_content
from lightcoder.repo_order.dependency import order_by_dependency

if TYPE_CHECKING:
    from lightcoder.data.records import SourceFile

OrderFn = Callable[[list["SourceFile"], random.Random], list["SourceFile"]]


def order_by_path(files: list[SourceFile], rng: random.Random) -> list[SourceFile]:
    """Group files by directory; groups in random order, files sorted by path within a group.

    Example: [a/x.py, b/y.py, a/z.py] -> [b/y.py, a/x.py, a/z.py] or [a/x.py, a/z.py, b/y.py]
    """
    groups: dict[str, list[SourceFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        groups.setdefault(posixpath.dirname(f.path), []).append(f)
    dirs = sorted(groups)
    rng.shuffle(dirs)
    return [f for d in dirs for f in groups[d]]


def order_randomly(files: list[SourceFile], rng: random.Random) -> list[SourceFile]:
    """A uniform shuffle (of the path-sorted files, so the result does not depend on input order)."""
    out = sorted(files, key=lambda f: f.path)
    rng.shuffle(out)
    return out


STRATEGIES: dict[str, OrderFn] = {
    "content": order_by_content,
    "path": order_by_path,
    "dependency": order_by_dependency,
    "random": order_randomly,
}


def order_files(files: list[SourceFile], strategy: str, rng: random.Random) -> list[SourceFile]:
    """The files of one repository in the order `strategy` gives them."""
    fn = STRATEGIES.get(strategy)
    if fn is None:
        raise ValueError(f"unknown sampling strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    return fn(files, rng)


def choose_strategy(weights: dict[str, float], rng: random.Random) -> str:
    """Draw a strategy name with probability proportional to its weight (one draw per repository).

    Example: choose_strategy({"path": 0.9, "random": 0.1}, rng) -> "path" (90% of draws)
    """
    check_sampling_weights(weights)
    names = sorted(weights)  # a fixed order so the draw depends only on (weights, rng)
    x = rng.random() * sum(weights[n] for n in names)
    for name in names:
        x -= weights[name]
        if x < 0:
            return name
    return next(n for n in reversed(names) if weights[n] > 0)  # float round-off at the top end
