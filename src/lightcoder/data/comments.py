"""Commented-out code (aiXcoder step 5): find large blocks of it and delete a share of them.

A block is a run of at least `min_lines` consecutive line comments ("#" or "//" by language)
where at least `min_code_share` of the uncommented lines look like code (CODE_LINE_RE: ends in
`;`, `{`, `}`, `)` or `:`, or starts with a keyword or an assignment/call) and the uncommented
text parses with tree-sitter without an error when a grammar is installed. Each block found is
deleted with probability `probability`, drawn from `random.Random(f"{seed}:{path}")`, so the
outcome depends on (seed, file) only, never on which worker ran it.

Example: with probability=1, "x = 1\\n# a = f(b)\\n# c = g(a)\\n# print(c)\\n# d = [c]\\n# e = d\\n"
-> "x = 1\\n" (for min_lines=5)
"""

from __future__ import annotations

import random
import re
from functools import cache

from lightcoder.data.config import CommentsConfig
from lightcoder.languages import has_grammar, tree_sitter_parser

HASH_COMMENT = frozenset({"Python", "Ruby", "Shell", "Perl", "R", "Julia", "YAML", "TOML",
                          "Elixir", "PowerShell", "CMake", "Makefile"})
SLASH_COMMENT = frozenset({"Java", "C", "C++", "C#", "Go", "JavaScript", "TypeScript", "Rust",
                           "Kotlin", "Swift", "Scala", "PHP", "Dart", "Cuda", "Zig"})
CODE_LINE_RE = re.compile(
    r"[;{}):]\s*$|^\s*(def|class|if|elif|else|for|while|return|import|from|try|except|with|"
    r"public|private|static|int|void|var|let|const|function|struct|#include|print)\b"
    r"|^\s*[\w.\[\]]+\s*(=|\+=|-=)\s*\S|^\s*[\w.]+\(.*\)\s*;?\s*$")


def _prefix(language: str) -> str | None:
    if language in HASH_COMMENT:
        return "#"
    if language in SLASH_COMMENT:
        return "//"
    return None


@cache
def _run_regex(prefix: str, min_lines: int) -> re.Pattern:
    """Runs of >= min_lines consecutive comment lines (doc comments "///", "//!", "#!" excluded)."""
    p = re.escape(prefix)
    return re.compile(rf"(?:^[ \t]*{p}(?!/|!)[^\n]*(?:\n|\Z)){{{min_lines},}}", re.MULTILINE)


def find_code_blocks(text: str, language: str, *, min_lines: int, min_code_share: float
                     ) -> list[tuple[int, int]]:
    """(start, end) character ranges of commented-out code blocks (whole lines)."""
    prefix = _prefix(language)
    if prefix is None or prefix not in text:
        return []
    blocks = []
    for m in _run_regex(prefix, min_lines).finditer(text):
        lines = m.group(0).rstrip("\n").split("\n")
        if _looks_like_code(lines, prefix, language, min_code_share):
            blocks.append(m.span())
    return blocks


def _looks_like_code(block: list[str], prefix: str, language: str, min_code_share: float) -> bool:
    body = [ln.lstrip()[len(prefix):] for ln in block]
    body = [b[1:] if b.startswith(" ") else b for b in body]
    code = sum(bool(CODE_LINE_RE.search(b)) for b in body if b.strip())
    nonblank = sum(bool(b.strip()) for b in body)
    if not nonblank or code / nonblank < min_code_share:
        return False
    if has_grammar(language):
        import textwrap

        src = textwrap.dedent("\n".join(body)).encode("utf-8")
        return not tree_sitter_parser(language).parse(src).root_node.has_error
    return True


def remove_commented_code(text: str, language: str, path: str, *, cfg: CommentsConfig, seed: int
                          ) -> tuple[str, int, int]:
    """(text, blocks found, blocks deleted); deletion seeded by (seed, path)."""
    blocks = find_code_blocks(text, language, min_lines=cfg.min_lines,
                              min_code_share=cfg.min_code_share)
    if not blocks:
        return text, 0, 0
    rng = random.Random(f"{seed}:{path}")
    delete = [b for b in blocks if rng.random() < cfg.probability]
    if not delete:
        return text, len(blocks), 0
    out, last = [], 0
    for start, end in delete:
        out.append(text[last:start])
        last = end
    return "".join(out) + text[last:], len(blocks), len(delete)
