"""Exact deduplication: one copy of each content, by SHA-256 of whitespace-normalised text.

Normalising collapses every whitespace run to one space and strips the ends, so copies that
differ only in line endings, trailing spaces or indentation width count as duplicates. The first
file in input order is kept; the pipeline feeds files sorted by corpus path, so the survivor is
the lexicographically first path ("a/x.py" beats "b/x.py") whatever the scan order.

Near-duplicates (MinHash LSH, research/aixcoder-7b.md §2.2) are not handled here yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from lightcoder.data.records import Rejection, SourceFile


def normalized_sha256(text: str) -> str:
    """Hex SHA-256 of text with whitespace runs collapsed to single spaces.

    Example: normalized_sha256("a  =\\r\\n1") == normalized_sha256("a =\\n1")
    """
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def dedup_exact(
    files: Iterable[SourceFile], *, on_drop: Callable[[Rejection], None]
) -> Iterator[SourceFile]:
    """Yield the first file of each normalised content (setting `sha256`), drop the rest."""
    first_path: dict[str, str] = {}
    for f in files:
        digest = normalized_sha256(f.content)
        if digest in first_path:
            on_drop(Rejection(repo=f.repo, path=f.path, reason="duplicate",
                              detail=f"same content as {first_path[digest]}",
                              size=int(f.meta.get("size", len(f.content.encode("utf-8"))))))
            continue
        first_path[digest] = f.path
        yield replace(f, sha256=digest)
