"""Quality checks: files that do not parse, and files that do not look like code.

Syntax (aiXcoder README step 6): parse with tree-sitter and reject the file when the tree has an
ERROR or MISSING node (reason "syntax_error", detail = line and node); for C/C++ a configurable
share of bytes in ERROR nodes is tolerated (`SyntaxConfig`). Languages without an installed
grammar are not checked; the pipeline lists them in stats.json.

Heuristics (StarCoder-style; research/aixcoder-7b.md §2.2 [OURS]): reasons "max_line_length",
"avg_line_length", "alphanumeric". The defaults below are the BigCode thresholds; on CPython
3.11's standard library they drop one file (a test with an embedded 1181-char bytes literal).

The parse check uses tree-sitter directly (lightcoder.languages.tree_sitter_parser), not
lightcoder.fim.spans, so the corpus stage does not depend on the FIM code.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from lightcoder.data.config import MAX_AVG_LINE_LENGTH, MAX_LINE_LENGTH, MIN_ALNUM_FRACTION
from lightcoder.data.filters import Check
from lightcoder.languages import has_grammar, tree_sitter_parser


@cache
def can_check_syntax(language: str) -> bool:
    """True when a tree-sitter grammar for the language is installed."""
    return has_grammar(language)


def error_ratio(root) -> float:
    """Share of the file's bytes inside outermost ERROR nodes (a MISSING node counts 1 byte)."""
    total = max(1, root.end_byte - root.start_byte)
    bad, stack = 0, [root]
    while stack:
        node = stack.pop()
        if node.is_error:
            bad += max(1, node.end_byte - node.start_byte)
        elif node.is_missing:
            bad += 1
        elif node.has_error:
            stack.extend(node.children)
    return bad / total


def check_syntax(text: str, language: str, max_error_ratio: float = 0.0, tree=None) -> Check:
    """("syntax_error", "line N: ERROR ...") when tree-sitter finds errors above the ratio.

    Languages without a grammar pass unchecked.
    Example: check_syntax("def f(:\\n", "Python") -> ("syntax_error", "line 1: ERROR ...")
    """
    if not can_check_syntax(language):
        return None
    root = (tree or tree_sitter_parser(language).parse(text.encode("utf-8"))).root_node
    if not root.has_error:
        return None
    if max_error_ratio > 0:
        ratio = error_ratio(root)
        if ratio <= max_error_ratio:
            return None
        return "syntax_error", f"{ratio:.1%} of bytes in errors; {_first_error(root)}"
    return "syntax_error", _first_error(root)


def _first_error(root) -> str:
    """Line and kind of the innermost first ERROR/MISSING node.

    Descends only into subtrees that contain an error; an ERROR node can span most of a file
    (tree-sitter's recovery), so its innermost erroneous descendant is the useful location.
    """
    node, error = root, None
    while True:
        if node.is_missing:
            return f"line {node.start_point.row + 1}: MISSING {node.type}"
        if node.is_error:
            error = node
        bad = [c for c in node.children if c.has_error or c.is_error or c.is_missing]
        if not bad:
            break
        node = bad[0]
    if error is None:  # has_error set, yet no ERROR/MISSING node found: report where it stopped
        return f"line {node.start_point.row + 1}: error in {node.type}"
    return f"line {error.start_point.row + 1}: ERROR near {_snippet(error)}"


def _snippet(node) -> str:
    text = (node.text or b"").decode("utf-8", errors="replace").splitlines()
    return repr(text[0][:40]) if text else "''"


_ALNUM_BYTE = np.zeros(256, dtype=np.uint8)
_ALNUM_BYTE[[c for c in range(256) if chr(c).isascii() and chr(c).isalnum()]] = 1


def alnum_fraction(text: str) -> float:
    """Share of letters and digits among characters (numpy over the bytes: a non-ASCII
    character counts as alphanumeric, as str.isalnum says for letters in any script).

    Example: alnum_fraction("ab, c") -> 0.6
    """
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if data.size == 0:
        return 0.0
    ascii_alnum = int(_ALNUM_BYTE[data].sum(dtype=np.int64))
    non_ascii = int(np.count_nonzero(data >= 0xC0))  # lead bytes: one per non-ASCII character
    chars = int(np.count_nonzero((data < 0x80) | (data >= 0xC0)))
    return (ascii_alnum + non_ascii) / chars


def check_heuristics(
    text: str,
    *,
    max_line_length: int = MAX_LINE_LENGTH,
    max_avg_line_length: float = MAX_AVG_LINE_LENGTH,
    min_alnum_fraction: float = MIN_ALNUM_FRACTION,
) -> Check:
    """StarCoder-style "looks like code" checks; a threshold <= 0 disables its check.

    Example: check_heuristics("x" * 2000) -> ("max_line_length", "2000 chars > 1000")
    """
    lines = text.splitlines() or [""]
    if max_line_length > 0:
        longest = max(map(len, lines))
        if longest > max_line_length:
            return "max_line_length", f"{longest} chars > {max_line_length}"
    if max_avg_line_length > 0:
        avg = len(text) / len(lines)
        if avg > max_avg_line_length:
            return "avg_line_length", f"{avg:.1f} chars > {max_avg_line_length}"
    if min_alnum_fraction > 0:
        frac = alnum_fraction(text)
        if frac < min_alnum_fraction:
            return "alphanumeric", f"{frac:.3f} < {min_alnum_fraction}"
    return None
