"""MinHash signatures of source files, vectorised with numpy, and their LSH band keys.

Shingles are 5-grams of word tokens (runs of [0-9A-Za-z_] and non-ASCII bytes; BigCode's
near-dedup splits on non-alphanumerics the same way). Tokens are hashed in numpy from byte prefix
sums (`token_hashes`: stable across processes, unlike `hash()`, and no Python code per token),
a 5-gram's hash is a polynomial of its token hashes in uint64 arithmetic, and the 256
permutations are Dietzfelbinger's multiply-shift family h_i(x) = (a_i * x mod 2^64) >> 32 (a_i
random odd) over the 32-bit shingle hash x, evaluated as one (shingles x 256) matrix per chunk of shingles. The
signature is the per-permutation minimum, uint32.

LSH: the first BANDS * ROWS = 250 values form 25 bands of 10 rows; two files share a bucket in a
band when their 10 values are equal, which happens with probability s^10 for Jaccard s, so a pair
at s = 0.7 is a candidate with probability 1 - (1 - 0.7^10)^25 = 0.59 and at s = 0.8 with 0.94
(the BigCode setting). `band_keys` turns each band into one uint64 key.

Example: j = estimated_jaccard(signature(a), signature(b)) is within about 0.06 of the exact
Jaccard of the shingle sets of a and b (standard error sqrt(j(1-j)/256)).
"""

from __future__ import annotations

import re

import numpy as np

NUM_PERM = 256
BANDS = 25
ROWS = 10
NGRAM = 5
TOKEN_RE = re.compile(r"\w+")
_CHUNK = 512  # shingles per (chunk x 256) uint64 block: 1 MB, stays in cache
_POLY = np.uint64(0x9E3779B97F4A7C15)  # odd constants for mixing (golden ratio, murmur3)
_MIX = np.uint64(0xFF51AFD7ED558CCD)
_BAND_MUL = np.uint64(0xC2B2AE3D27D4EB4F)
_EMPTY = np.iinfo(np.uint32).max


class MinHasher:
    """Signatures for one fixed set of permutations (fixed by `seed`)."""

    def __init__(self, *, num_perm: int = NUM_PERM, ngram: int = NGRAM, seed: int = 1) -> None:
        if num_perm < BANDS * ROWS:
            raise ValueError(f"num_perm={num_perm} < bands*rows={BANDS * ROWS}")
        rng = np.random.default_rng(seed)
        self.num_perm, self.ngram = num_perm, ngram
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._buf = np.empty((_CHUNK, num_perm), dtype=np.uint64)

    def shingle_hashes(self, text: str, tokens: np.ndarray | None = None) -> np.ndarray:
        """Unique 32-bit hashes (as uint64) of the token n-grams of text; (S,) sorted.

        `tokens` = token_hashes(text.encode()) when the caller already has them.
        """
        t = token_hashes(text.encode("utf-8")) if tokens is None else tokens  # (T,)
        if t.size == 0:
            return t
        n = max(1, len(t) - self.ngram + 1)  # a file shorter than one n-gram is one shingle
        s = t[:n].copy()
        for k in range(1, min(self.ngram, len(t))):
            s *= _POLY
            s += t[k: k + n]
        s ^= s >> np.uint64(29)
        s *= _MIX
        s ^= s >> np.uint64(32)
        return np.unique(s >> np.uint64(32))  # (S,) 32-bit values

    def signature(self, text: str, tokens: np.ndarray | None = None) -> np.ndarray:
        """(num_perm,) uint32 MinHash of text; all 0xFFFFFFFF when text has no token."""
        x = self.shingle_hashes(text, tokens)
        if x.size == 0:
            return np.full(self.num_perm, _EMPTY, dtype=np.uint32)
        lo = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, x.size, _CHUNK):
            chunk = x[start: start + _CHUNK]
            buf = self._buf[: chunk.size]
            np.multiply(chunk[:, None], self.a[None, :], out=buf)  # (k, P) wraps mod 2^64
            np.minimum(lo, buf.min(axis=0), out=lo)
        return (lo >> np.uint64(32)).astype(np.uint32)


def _is_word_table() -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    for c in b"0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        table[c] = True
    table[0x80:] = True  # UTF-8 bytes of non-ASCII characters count as word characters
    return table


_IS_WORD = _is_word_table()
_powers = np.ones(1, dtype=np.uint64)  # P^i mod 2^64, grown on demand
_inv_powers = np.ones(1, dtype=np.uint64)  # P^-i mod 2^64 (P is odd, so invertible)
_POLY_INV = np.uint64(pow(int(_POLY), -1, 2**64))


def _grow_powers(n: int) -> None:
    global _powers, _inv_powers
    if len(_powers) > n:
        return
    size = max(n + 1, 2 * len(_powers), 1 << 16)
    with np.errstate(over="ignore"):
        _powers = np.cumprod(np.full(size, _POLY, dtype=np.uint64)) * _POLY_INV
        _inv_powers = np.cumprod(np.full(size, _POLY_INV, dtype=np.uint64)) * _POLY


def token_hashes(data: bytes) -> np.ndarray:
    """(T,) uint64 hashes of the maximal runs of word bytes ([0-9A-Za-z_] and bytes >= 0x80).

    A token's hash is its polynomial sum(b_j * P^j), read off byte prefix sums in one pass:
    (H[end] - H[start]) * P^-start, so no Python code runs per token.
    Example: token_hashes(b"a+a") has two equal values.
    """
    if not data:
        return np.empty(0, dtype=np.uint64)
    b = np.frombuffer(data, dtype=np.uint8)
    word = _IS_WORD[b]
    edges = np.diff(word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return np.empty(0, dtype=np.uint64)
    _grow_powers(len(b))
    h = np.zeros(len(b) + 1, dtype=np.uint64)
    np.cumsum((b.astype(np.uint64) + np.uint64(1)) * _powers[: len(b)], out=h[1:])
    tok = (h[ends] - h[starts]) * _inv_powers[starts]
    return tok * _MIX + (ends - starts).astype(np.uint64)


# The comment lines and blocks a file starts with: licence headers, shebangs, coding cookies.
_LEADING_COMMENTS_RE = re.compile(r"\A(?:\s*(?:#[^\n]*|//[^\n]*|/\*.*?\*/|<!--.*?-->))*", re.S)


def strip_leading_comments(text: str) -> str:
    """text without its leading comment lines/blocks, which is what the pipeline shingles: two
    short files that share only a 25-line licence header (the JDK's) are not near duplicates.

    Example: strip_leading_comments("/* GPL ... */\n// x\nclass A {}") -> "\nclass A {}"
    """
    m = _LEADING_COMMENTS_RE.match(text)
    return text[m.end():] if m else text


def band_keys(signatures: np.ndarray, *, bands: int = BANDS, rows: int = ROWS) -> np.ndarray:
    """(N, bands) uint64 keys: one per band of `rows` signature values, band index mixed in.

    Example: equal signatures give equal keys in every band; a file with no token gets key 0
    in every band (callers skip it).
    """
    sig = np.asarray(signatures, dtype=np.uint64)[:, : bands * rows].reshape(-1, bands, rows)
    key = np.zeros(sig.shape[:2], dtype=np.uint64)
    for r in range(rows):
        key *= _BAND_MUL
        key += sig[:, :, r] + np.uint64(1)
    key ^= np.arange(bands, dtype=np.uint64) * _POLY
    empty = (np.asarray(signatures)[:, 0] == _EMPTY)
    key[empty] = 0
    return key


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Share of equal signature values: rows of a vs rows of b (or two single signatures)."""
    return (np.asarray(a) == np.asarray(b)).mean(axis=-1)


def shingle_set(text: str, ngram: int = NGRAM) -> set[tuple[str, ...]]:
    """The exact token n-gram set (for tests and the benchmark's exact Jaccard)."""
    tokens = TOKEN_RE.findall(text)
    if len(tokens) < ngram:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i: i + ngram]) for i in range(len(tokens) - ngram + 1)}
