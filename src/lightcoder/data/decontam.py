"""Decontamination: drop files that share a long token n-gram with an evaluation benchmark.

Benchmark texts are HumanEval's prompts and canonical solutions (found by
`lightcoder.benchmark_files.humaneval_path`, e.g. /work/shared/data/HumanEval.jsonl.gz) plus any files
given in `data.decontam.benchmarks`: JSONL(.gz) rows (their prompt / canonical_solution / code /
content / text fields) or plain text files. Both sides are tokenised like the MinHash shingles
(minhash.token_hashes: word tokens only, so whitespace and punctuation changes do not hide a
copy), every window of `ngram` tokens is hashed, and a file is contaminated when one of its
windows is in the benchmark set (reason "contaminated", detail = the benchmark entry). 13-grams
are GPT-3's choice; we default to 20 word tokens because code shares short idioms
(`for i in range(len(numbers)):` is 7) - on CPython's stdlib 20 gives no false positive.

A benchmark file that is missing is an error; HumanEval not found on disk is a warning on
stderr (data.decontam.humaneval = false silences it). Curation never imports the eval code: the
benchmark locations live in `lightcoder.benchmark_files`.

Example: a file that pastes HumanEval/0's solution loop is dropped; one that only imports List
and defines `def f(numbers)` is not.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

from lightcoder.data import minhash
from lightcoder.data.config import DecontamConfig
from lightcoder.data.minhash import _MIX, token_hashes
from lightcoder.benchmark_files import humaneval_path

TEXT_FIELDS = ("prompt", "canonical_solution", "code", "content", "text", "solution")


def ngram_hashes(text: str, n: int, tokens: np.ndarray | None = None) -> np.ndarray:
    """(W,) uint64 hashes of every window of n word tokens (empty when text is shorter)."""
    t = token_hashes(text.encode("utf-8")) if tokens is None else tokens
    if len(t) < n:
        return np.empty(0, dtype=np.uint64)
    w = len(t) - n + 1
    minhash._grow_powers(len(t))  # window hash = (H[i+n] - H[i]) * P^-i from prefix sums H
    pre = np.zeros(len(t) + 1, dtype=np.uint64)
    np.cumsum(t * minhash._powers[: len(t)], out=pre[1:])
    h = (pre[n:] - pre[:w]) * minhash._inv_powers[:w]
    h ^= h >> np.uint64(31)
    return h * _MIX


def _benchmark_texts(path: Path) -> list[tuple[str, str]]:
    """(label, text) pairs of a benchmark file."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        out = []
        with opener(path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if not line.strip():
                    continue
                row = json.loads(line)
                label = f"{path.name}:{row.get('task_id', i)}"
                for key in TEXT_FIELDS:
                    if isinstance(row.get(key), str):
                        out.append((label, row[key]))
        return out
    return [(path.name, path.read_text(encoding="utf-8", errors="replace"))]


def _find_humaneval() -> Path | None:
    """HumanEval's file, or None with a warning on stderr (the corpus is then not checked
    against it; set data.decontam.humaneval = false to say that is intended)."""
    try:
        return humaneval_path()
    except FileNotFoundError as e:
        print(f"warning: decontamination runs without HumanEval: {e}", file=sys.stderr)
        return None


class Decontaminator:
    """The hashed n-gram set of the benchmarks, and the check against it."""

    def __init__(self, cfg: DecontamConfig) -> None:
        self.n = cfg.ngram
        self.sources: list[str] = []
        paths = [Path(p) for p in cfg.benchmarks]
        for p in paths:
            if not p.is_file():
                raise ValueError(f"data.decontam.benchmarks: {p} does not exist")
        if cfg.humaneval:
            found = _find_humaneval()
            paths[:0] = [found] if found else []
        hashes, labels = [], []
        for p in paths:
            self.sources.append(str(p))
            for label, text in _benchmark_texts(p):
                h = ngram_hashes(text, self.n)
                hashes.append(h)
                labels += [label] * len(h)
        allh = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        order = np.argsort(allh, kind="stable")
        self.hashes = allh[order]
        self.labels = [labels[i] for i in order]

    def check(self, text: str, tokens: np.ndarray | None = None) -> tuple[str, str] | None:
        """("contaminated", "<benchmark entry>") when text shares an n-gram, else None."""
        if self.hashes.size == 0:
            return None
        h = ngram_hashes(text, self.n, tokens)
        if h.size == 0:
            return None
        idx = np.minimum(np.searchsorted(self.hashes, h), self.hashes.size - 1)
        hit = self.hashes[idx] == h
        if not hit.any():
            return None
        label = self.labels[int(idx[int(np.argmax(hit))])]
        return "contaminated", f"{int(hit.sum())} shared {self.n}-grams, e.g. with {label}"
