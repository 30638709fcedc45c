"""Model-free predictors with the Completer's `.complete(...)` interface, to anchor the eval table.

- EmptyPredictor: always "" (scores only on tasks whose middle is empty or whitespace).
- MostCommonLinePredictor: the most frequent code line of the training split, at the cursor's
  indentation. Pure comment lines are not counted: the same license/header comment lines repeat
  in every file of a corpus and would win, and a comment is never a completion worth scoring.
- OraclePredictor: returns each task's reference; a harness check that must score 100 EM.

None of them tokenizes, so their Completions report 0 prompt and 0 new tokens.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lightcoder.infer.completer import Completion
from lightcoder.languages import BY_NAME

if TYPE_CHECKING:
    from lightcoder.eval.builders import FimTask


def _line_indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def cursor_indent(prefix: str) -> str:
    """Indentation to put before a new line inserted at the end of `prefix`.

    Mid-line cursor -> ""; cursor after a newline plus whitespace -> "" (already indented);
    cursor right after a newline -> the indentation of the last non-blank line of the prefix.
    Example: cursor_indent("def f():\\n    x = 1\\n") -> "    "; cursor_indent("def f():\\n    ") -> ""
    """
    current = prefix.rsplit("\n", 1)[-1]
    if current or "\n" not in prefix:
        return ""
    for line in reversed(prefix.splitlines()):
        if line.strip():
            return _line_indent(line)
    return ""


def _completion(text: str, start: float) -> Completion:
    return Completion(text=text, prompt_tokens=0, new_tokens=0, stop_reason="stop",
                      seconds=time.perf_counter() - start)


class EmptyPredictor:
    """Always completes with the empty string."""

    def complete(self, prefix: str, suffix: str = "", *, path: str = "", max_new_tokens: int = 64,
                 mode: str = "spm", temperature: float = 0.0) -> Completion:
        return _completion("", time.perf_counter())


class MostCommonLinePredictor:
    """Completes every cursor with the training split's most common stripped code line."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._line: str | None = None  # cache: the argmax over all lines is too slow to redo per call

    def add(self, text: str, language: str = "Python") -> None:
        """Count the non-blank, non-comment stripped lines of one file."""
        lang = BY_NAME.get(language)
        comment_open = lang.comment_open.strip() if lang else None
        self._line = None
        for line in text.splitlines():
            line = line.strip()
            if line and not (comment_open and line.startswith(comment_open)):
                self.counts[line] += 1

    def fit(self, texts: Iterable[str], *, language: str = "Python") -> MostCommonLinePredictor:
        for text in texts:
            self.add(text, language)
        return self

    @classmethod
    def fit_from_corpus(cls, data_dir: str | Path, *, split: str = "train") -> MostCommonLinePredictor:
        """Counted over one split of a corpus stage dir (RUN/data), each file with its own comment syntax."""
        from lightcoder.data.records import read_corpus

        predictor = cls()
        for file in read_corpus(data_dir, split):
            predictor.add(file.content, file.language)
        return predictor

    @property
    def line(self) -> str:
        """The most common line (ties: the lexicographically smallest); ValueError before fit."""
        if self._line is None:
            if not self.counts:
                raise ValueError("MostCommonLinePredictor has no lines: call .fit(texts) on non-empty code first")
            self._line = min(self.counts.items(), key=lambda item: (-item[1], item[0]))[0]
        return self._line

    def complete(self, prefix: str, suffix: str = "", *, path: str = "", max_new_tokens: int = 64,
                 mode: str = "spm", temperature: float = 0.0) -> Completion:
        start = time.perf_counter()
        return _completion(cursor_indent(prefix) + self.line, start)


fit_from_corpus = MostCommonLinePredictor.fit_from_corpus


class OraclePredictor:
    """Answers each task with its reference middle (looked up by path, prefix and suffix)."""

    def __init__(self, tasks: Iterable[FimTask]) -> None:
        self.answers = {(t.path, t.prefix, t.suffix): t.middle for t in tasks}

    def complete(self, prefix: str, suffix: str = "", *, path: str = "", max_new_tokens: int = 64,
                 mode: str = "spm", temperature: float = 0.0) -> Completion:
        start = time.perf_counter()
        try:
            middle = self.answers[(path, prefix, suffix)]
        except KeyError:
            raise ValueError(f"OraclePredictor has no task for path {path!r} with this prefix/suffix") from None
        return _completion(middle, start)
