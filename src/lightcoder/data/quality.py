"""Quality step: drop files that do not parse, and (optionally) files that do not look like code.

Syntax (aiXcoder README step 6): parse with tree-sitter and reject the file when the tree has an
ERROR or MISSING node (reason "syntax_error", detail = line and node). Languages without an
installed grammar are not checked; the pipeline lists them in stats.json.

Heuristics (StarCoder-style; research/aixcoder-7b.md §2.2 [OURS]): reasons "max_line_length",
"avg_line_length", "alphanumeric". The defaults below are the BigCode thresholds; on CPython
3.11's standard library they drop one file (a test with an embedded 1181-char bytes literal).

The parse check uses tree-sitter directly (lightcoder.languages.tree_sitter_parser), not
lightcoder.fim.spans, so the corpus stage does not depend on the FIM code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cache

from lightcoder.data.filters import Check
from lightcoder.data.records import Rejection, SourceFile
from lightcoder.languages import has_grammar, tree_sitter_parser

MAX_LINE_LENGTH = 1000  # chars; longer lines are usually data or minified code
MAX_AVG_LINE_LENGTH = 100.0  # chars per line
MIN_ALNUM_FRACTION = 0.25  # share of letters and digits among all characters


@cache
def can_check_syntax(language: str) -> bool:
    """True when a tree-sitter grammar for the language is installed."""
    return has_grammar(language)


def check_syntax(text: str, language: str) -> Check:
    """("syntax_error", "line N: ERROR") when tree-sitter finds an ERROR/MISSING node, else None.

    Languages without a grammar pass unchecked.
    Example: check_syntax("def f(:\\n", "Python") -> ("syntax_error", "line 1: ERROR ...")
    """
    if not can_check_syntax(language):
        return None
    root = tree_sitter_parser(language).parse(text.encode("utf-8")).root_node
    if not root.has_error:
        return None
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
        frac = sum(map(str.isalnum, text)) / max(1, len(text))
        if frac < min_alnum_fraction:
            return "alphanumeric", f"{frac:.3f} < {min_alnum_fraction}"
    return None


def quality_files(
    files: Iterable[SourceFile],
    *,
    syntax_check: bool,
    heuristics: dict | None,
    on_drop: Callable[[Rejection], None],
) -> Iterator[SourceFile]:
    """Yield files that parse (when syntax_check) and pass `check_heuristics(**heuristics)`.

    heuristics=None skips the heuristic checks.
    """
    for f in files:
        check = check_syntax(f.content, f.language) if syntax_check else None
        if check is None and heuristics is not None:
            check = check_heuristics(f.content, **heuristics)
        if check is not None:
            on_drop(Rejection(repo=f.repo, path=f.path, reason=check[0], detail=check[1],
                              size=int(f.meta.get("size", 0))))
            continue
        yield f
