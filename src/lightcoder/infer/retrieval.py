"""Cross-file context: BM25 over code tokens, the CrossCodeEval setup aiXcoder reports (top-3 chunks).

Files come with the request (`input_extra` [{filename, text}]) or from a workspace directory indexed
at start-up. Files are cut into chunks of `CHUNK_LINES` lines (half-overlapping); the query is the
last `QUERY_LINES` complete lines before the cursor line, so the result does not change while the
user types inside a line (and the cached prompt KV stays valid). Tokens are identifiers split at
snake_case and camelCase boundaries, lower-cased, plus the whole identifier.

Example:
    index = ChunkIndex.from_files([("util.py", code)])
    index.search(query_text(prefix), k=3)   # -> [(path, chunk_text), ...] best first
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lightcoder.languages import language_for_path

CHUNK_LINES = 20
QUERY_LINES = 12
MAX_FILE_BYTES = 256_000
MAX_WORKSPACE_FILES = 5_000
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_PART_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", "build", "dist", ".tox"}


def code_tokens(text: str) -> list[str]:
    """Example: code_tokens("getUser_name(x)") -> ["getuser_name", "get", "user", "name", "x"]"""
    out = []
    for ident in _IDENT_RE.findall(text):
        low = ident.lower()
        out.append(low)
        parts = [p.lower() for p in _PART_RE.findall(ident)]
        if len(parts) > 1:
            out.extend(parts)
    return out


def query_text(prefix: str, lines: int = QUERY_LINES) -> str:
    """The last `lines` complete lines before the cursor's line (stable while typing in a line)."""
    complete = prefix[:prefix.rfind("\n") + 1]
    return "".join(complete.splitlines(keepends=True)[-lines:])


def chunk_file(text: str, lines: int = CHUNK_LINES) -> list[str]:
    rows = text.splitlines(keepends=True)
    if len(rows) <= lines:
        return [text] if text.strip() else []
    step = max(1, lines // 2)
    return ["".join(rows[i:i + lines]) for i in range(0, len(rows) - step, step)]


class ChunkIndex:
    """Okapi BM25 (k1 1.2, b 0.75) over chunks of files."""

    def __init__(self, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.chunks: list[tuple[str, str]] = []  # (path, text)
        self.term_freqs: list[Counter] = []
        self.doc_freq: Counter = Counter()
        self.lengths: list[int] = []

    @classmethod
    def from_files(cls, files: Iterable[tuple[str, str]]) -> ChunkIndex:
        index = cls()
        for path, text in files:
            index.add(path, text)
        return index

    def add(self, path: str, text: str) -> None:
        for chunk in chunk_file(text):
            tf = Counter(code_tokens(chunk))
            self.chunks.append((path, chunk))
            self.term_freqs.append(tf)
            self.doc_freq.update(tf.keys())
            self.lengths.append(sum(tf.values()))

    def __len__(self) -> int:
        return len(self.chunks)

    def search(self, query: str, k: int = 3, *, exclude_path: str | None = None) -> list[tuple[str, str]]:
        terms = set(code_tokens(query))
        if not terms or not self.chunks:
            return []
        n = len(self.chunks)
        avg = sum(self.lengths) / n or 1.0
        idf = {t: math.log(1 + (n - self.doc_freq[t] + 0.5) / (self.doc_freq[t] + 0.5))
               for t in terms if self.doc_freq[t]}
        scored = []
        for i, tf in enumerate(self.term_freqs):
            if exclude_path is not None and self.chunks[i][0] == exclude_path:
                continue
            norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / avg)
            score = sum(w * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t, w in idf.items() if t in tf)
            if score > 0:
                scored.append((score, -i))
        scored.sort(reverse=True)
        return [self.chunks[-i] for _, i in scored[:k]]


def workspace_files(root: str | Path, *, max_files: int = MAX_WORKSPACE_FILES) -> list[tuple[str, str]]:
    """(relative path, text) of the source files under root whose extension has a known language."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"workspace {root} is not a directory; pass --workspace DIR with source files")
    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if language_for_path(name) is None:
                continue
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            out.append((str(path.relative_to(root)), text))
            if len(out) >= max_files:
                return out
    return out
