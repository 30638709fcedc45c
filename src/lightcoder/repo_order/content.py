"""Content-similarity ordering: TF-IDF over identifiers, then a nearest-neighbour chain.

Each file becomes a TF-IDF vector over its identifiers (`[A-Za-z_]\\w{2,}`, so `x`, `i` and
keywords-by-frequency weigh little): tf = 1 + log(count), idf = log((1 + n) / (1 + df)) + 1,
rows L2-normalised, the `MAX_FEATURES` most widespread identifiers kept. Small repositories
(<= `CHAIN_MAX` files) are one greedy chain: start at a random file, always move to the most
similar unvisited one. Larger ones are first split with spherical k-means (k = sqrt(n),
aiXcoder's "K-Means clustering and TF-IDF distance"); clusters come in random order, each as a
chain. Cost: O(n^2 F) for a chain (F features), O(n k F) per k-means round.

Example: [a_parser.py, b_util.py, c_parser_test.py] from a_parser -> c_parser_test next (shared
identifiers), b_util last.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lightcoder.data.records import SourceFile

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
MAX_FEATURES = 2048
MAX_MATRIX_CELLS = 40_000_000
MAX_CHARS = 100_000  # identifiers are read from the first 100k chars of a file
CHAIN_MAX = 384
KMEANS_ROUNDS = 8


def tfidf_matrix(texts: list[str]) -> np.ndarray:
    """(n, F) float32 TF-IDF rows, L2-normalised (an all-zero row for a file without identifiers)."""
    counts = [Counter(IDENTIFIER_RE.findall(t[:MAX_CHARS])) for t in texts]
    df: Counter = Counter()
    for c in counts:
        df.update(c.keys())
    n = len(texts)
    # keep identifiers shared by >= 2 files (a unique one says nothing about similarity),
    # the most widespread first; ties by name so the vocabulary is deterministic
    # memory: n * F float32 stays under ~160 MB for very large repositories
    max_features = max(64, min(MAX_FEATURES, MAX_MATRIX_CELLS // max(n, 1)))
    vocab = [w for w, d in sorted(df.items(), key=lambda kv: (-kv[1], kv[0])) if d >= 2][:max_features]
    column = {w: j for j, w in enumerate(vocab)}
    idf = np.array([math.log((1 + n) / (1 + df[w])) + 1.0 for w in vocab], dtype=np.float32)
    x = np.zeros((n, len(vocab)), dtype=np.float32)
    for i, c in enumerate(counts):
        for w, k in c.items():
            j = column.get(w)
            if j is not None:
                x[i, j] = 1.0 + math.log(k)
    x *= idf
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def nearest_neighbour_chain(x: np.ndarray, rng: random.Random) -> list[int]:
    """Row order: a random start, then repeatedly the most similar unvisited row (ties: lowest index)."""
    n = len(x)
    if n == 0:
        return []
    sim = x @ x.T  # (n, n) cosine similarities
    visited = np.zeros(n, dtype=bool)
    cur = rng.randrange(n)
    order = [cur]
    visited[cur] = True
    for _ in range(n - 1):
        row = np.where(visited, -np.inf, sim[cur])
        cur = int(np.argmax(row))
        visited[cur] = True
        order.append(cur)
    return order


def kmeans_clusters(x: np.ndarray, k: int, rng: random.Random) -> list[list[int]]:
    """Spherical k-means (cosine) with seeded random initial centres; non-empty clusters, index-sorted."""
    n = len(x)
    centres = x[sorted(rng.sample(range(n), k))].copy()
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(KMEANS_ROUNDS):
        labels = np.argmax(x @ centres.T, axis=1)  # (n, k) similarities -> nearest centre
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centre = members.sum(axis=0)
                centres[c] = centre / max(float(np.linalg.norm(centre)), 1e-12)
    return [list(np.flatnonzero(labels == c)) for c in range(k) if np.any(labels == c)]


def order_by_content(files: list[SourceFile], rng: random.Random) -> list[SourceFile]:
    """Similar files next to each other (see module docstring); pure, randomness only from rng."""
    files = sorted(files, key=lambda f: f.path)
    if len(files) <= 2:
        out = list(files)
        rng.shuffle(out)
        return out
    x = tfidf_matrix([f.content for f in files])
    if len(files) <= CHAIN_MAX:
        return [files[i] for i in nearest_neighbour_chain(x, rng)]
    clusters = kmeans_clusters(x, max(2, round(math.sqrt(len(files)))), rng)
    rng.shuffle(clusters)
    out = []
    for members in clusters:
        out += [files[members[i]] for i in nearest_neighbour_chain(x[members], rng)]
    return out
