"""Exact and near deduplication over the whole corpus, deterministic whatever the worker count.

Input: for every file that survived the per-shard checks, its order key (rank of its repository,
best first, then path), its normalised SHA-256 and its MinHash signature (minhash.py).

    exact   files with the same normalised hash: the one with the smallest order key is kept
    near    among exact survivors, files sharing an LSH bucket (25 bands x 10 rows) become a
            candidate edge to the bucket's best-keyed file; an edge is kept when the signatures
            agree on >= threshold of their 256 values (the estimated Jaccard, which removes most
            LSH false positives, text-dedup issue #70); connected components of kept edges are
            clusters, and each cluster keeps its best-keyed file

Nothing depends on shard boundaries or processing order: edges are defined by keys alone and a
component's winner is its minimum key, so 1 or 16 workers keep the same files. Memory: 25 uint64
band keys per file (200 bytes) plus the caller's path and hash; signatures can be a memory map.

Example: cluster([(0, "a/x.py"), (1, "b/x.py")], same sha) -> b/x.py dropped as duplicate of a/x.py
"""

from __future__ import annotations

import hashlib

import numpy as np

from lightcoder.data.minhash import BANDS, band_keys, estimated_jaccard


def normalized_sha256(text: str) -> str:
    """Hex SHA-256 of text with whitespace runs collapsed to single spaces.

    Example: normalized_sha256("a  =\\r\\n1") == normalized_sha256("a =\\n1")
    """
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller index (better key) becomes the root
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster(priority: np.ndarray, shas: list[str], signatures: np.ndarray, *,
            threshold: float, near: bool = True) -> dict[int, tuple[str, int, float]]:
    """{dropped doc: (reason, kept doc, similarity)} with docs indexed as given.

    `priority` (N,) ranks the docs (0 = kept first); it must be a permutation of range(N).
    """
    n = len(shas)
    dropped: dict[int, tuple[str, int, float]] = {}
    order = np.argsort(priority, kind="stable")  # docs best first
    best_of_sha: dict[str, int] = {}
    for d in order.tolist():
        first = best_of_sha.setdefault(shas[d], d)
        if first != d:
            dropped[d] = ("duplicate", first, 1.0)
    if not near or n < 2:
        return dropped
    alive = np.array([d for d in order.tolist() if d not in dropped], dtype=np.int64)  # by key
    if alive.size < 2:
        return dropped
    keys = band_keys(signatures[alive])  # (A, BANDS), rows in key order
    heads, members = [], []
    pos = np.arange(alive.size)
    for b in range(BANDS):
        col = keys[:, b]
        srt = np.lexsort((pos, col))  # by bucket, then by key order
        k = col[srt]
        start = np.r_[True, k[1:] != k[:-1]]
        head = srt[np.maximum.accumulate(np.where(start, np.arange(k.size), 0))]
        mask = (srt != head) & (k != 0)
        heads.append(head[mask])
        members.append(srt[mask])
    if not heads:
        return dropped
    edges = np.unique(np.stack([np.concatenate(heads), np.concatenate(members)], axis=1), axis=0)
    if edges.size == 0:
        return dropped
    sim = np.empty(len(edges))
    for s in range(0, len(edges), 65536):  # bounded memory: 64k pairs x 2 x 1 KB
        e = edges[s: s + 65536]
        sim[s: s + 65536] = estimated_jaccard(signatures[alive[e[:, 0]]],
                                              signatures[alive[e[:, 1]]])
    uf = _UnionFind(alive.size)
    for (h, m), j in zip(edges.tolist(), sim.tolist()):
        if j >= threshold:
            uf.union(h, m)
    best_sim: dict[int, float] = {}
    for (h, m), j in zip(edges.tolist(), sim.tolist()):
        if j >= threshold:
            best_sim[m] = max(best_sim.get(m, 0.0), j)
    for i in range(alive.size):
        root = uf.find(i)
        if root != i:
            dropped[int(alive[i])] = ("near_duplicate", int(alive[root]), best_sim.get(i, threshold))
    return dropped
