"""Syntax-aware spans for Structured FIM (SFIM) and FIM-Eval-style tasks, found with tree-sitter.

SFIM (research/aixcoder-7b.md §3): pick a syntax node at random and mask a contiguous run of its
children, so the middle is one or several complete code structures. The README example takes the
condition and ":" children of an `if`:

    for i in range(20):
        if |i % 5 == 0:|        <- middle; the body stays in the suffix
            print("Hello World")

Everything here is pure and returns CHARACTER offsets into the str. tree-sitter reports UTF-8 byte
offsets; `ParsedSource.char` converts them at the parse boundary and nowhere else. Node-type names
are per-language constants in fim/rules.py (`RULES`: Python, Java, JavaScript, TypeScript, C, C++,
Go, Rust). Subtrees containing ERROR or MISSING nodes are never chosen.
Design cost: candidate nodes come from one tree-sitter query (fast, C side), but the children of
only the chosen node are materialised, so `structured_spans` (exhaustive) is much slower than
`sample_structured_span` (one draw, a few ms per average stdlib file).
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from typing import Any

from lightcoder.fim.rules import RULES, SyntaxRules
from lightcoder.languages import has_grammar, tree_sitter_language, tree_sitter_parser
from lightcoder.pack_config import DEFAULT_MAX_CHARS, DEFAULT_WHOLE_NODE_RATE

EVAL_KINDS: tuple[str, ...] = (
    "single_line", "method_body", "if_statement", "for_statement", "while_statement", "try_statement",
)
_MAX_TRIES = 16
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class Span:
    """A half-open character range [start, end) of a text, with what produced it."""

    start: int
    end: int
    kind: str




@dataclass(frozen=True)
class ParsedSource:
    """A parsed text plus the byte -> char offset map (the one place offsets are converted)."""

    text: str
    language: str
    tree: Any  # tree_sitter.Tree
    _ends: list[int]  # byte offset right after each non-ASCII char
    _extra: list[int]  # cumulative extra bytes (utf-8 length - 1) up to that char

    @property
    def has_error(self) -> bool:
        return self.tree.root_node.has_error

    @property
    def rules(self) -> SyntaxRules | None:
        return RULES.get(self.language)

    def char(self, byte_offset: int) -> int:
        """Char offset of a byte offset that lies on a char boundary (all tree-sitter offsets do)."""
        k = bisect_right(self._ends, byte_offset)
        return byte_offset - (self._extra[k - 1] if k else 0)

    def extent(self, node) -> tuple[int, int]:
        return self.char(node.start_byte), self.char(node.end_byte)


def parse_source(text: str, language: str | None) -> ParsedSource | None:
    """Parse `text`; None when the language is unknown or has no installed grammar."""
    if not language or not has_grammar(language):
        return None
    ends: list[int] = []
    extra: list[int] = []
    total = 0
    for m in _NON_ASCII_RE.finditer(text):
        n = len(m.group().encode("utf-8", "surrogatepass"))
        total += n - 1
        ends.append(m.end() + total)  # char end + all extra bytes so far = byte end
        extra.append(total)
    data = text.encode("utf-8", "surrogatepass")
    tree = tree_sitter_parser(language).parse(data)
    return ParsedSource(text, language, tree, ends, extra)


def parse_tree(text: str, language: str | None):
    """The tree-sitter Tree of `text`, or None when no grammar is installed for the language."""
    parsed = parse_source(text, language)
    return parsed.tree if parsed else None


def has_syntax_error(text: str, language: str | None) -> bool:
    """True when tree-sitter finds an ERROR or MISSING node; False when there is no grammar to check."""
    parsed = parse_source(text, language)
    return parsed is not None and parsed.has_error


# ---------------------------------------------------------------------------------------------
# SFIM


@cache
def _structural_query(language: str):
    import tree_sitter

    rules = RULES[language]
    return tree_sitter.Query(tree_sitter_language(language), " ".join(f"({t}) @n" for t in rules.structural))


def _structural_nodes(parsed: ParsedSource) -> list[tuple[int, int, str, Any]]:
    """(start_byte, end_byte, type, node) of every structural node without ERROR/MISSING inside it.

    A file with a syntax error keeps its clean subtrees (C/C++ headers full of macros often have
    one ERROR node and hundreds of clean functions); the subtrees around the error are never chosen.
    """
    if parsed.rules is None:
        return []
    import tree_sitter

    captures = tree_sitter.QueryCursor(_structural_query(parsed.language)).captures(parsed.tree.root_node)
    found = captures.get("n", [])
    if parsed.has_error:
        found = [n for n in found if not n.has_error]
    nodes = [(n.start_byte, n.end_byte, n.type, n) for n in found]
    # NOTE: capture order differs between two parses of the same text; sort for reproducibility.
    nodes.sort(key=lambda t: (t[0], -t[1], t[2]))
    return nodes


def _child_runs(parsed: ParsedSource, node) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(starts, ends): (child index, char offset) of children that may start / end a run."""
    rules = parsed.rules
    assert rules is not None
    starts, ends = [], []
    for i, child in enumerate(node.children):
        if child.start_byte == child.end_byte or child.type in rules.skipped_children:
            continue
        if child.is_named:
            starts.append((i, parsed.char(child.start_byte)))
            ends.append((i, parsed.char(child.end_byte)))
        elif child.type in rules.trailing_tokens and ends:
            ends.append((i, parsed.char(child.end_byte)))
    return starts, ends


def _spans_of_node(parsed: ParsedSource, node, max_chars: int | None) -> list[tuple[int, int]]:
    start, end = parsed.extent(node)
    out = [(start, end)]
    starts, ends = _child_runs(parsed, node)
    for i, s in starts:
        for j, e in ends:
            if j < i:
                continue
            if max_chars is not None and e - s > max_chars:
                break
            out.append((s, e))
    return out


def structured_spans(text: str, language: str | None, *, max_chars: int | None = None) -> list[Span]:
    """Every SFIM candidate: each structural node whole, and each contiguous run of its children.

    A run starts on a named child and ends on a named child or a trailing token (":" in Python).
    Empty for unparsable text. Spans are unique, sorted, and kind is the parent node's type.
    Example: "if x:\\n    y\\n" -> includes Span(3, 5, "if_statement") ("x:"), Span(0, 11, ...).
    """
    parsed = parse_source(text, language)
    if parsed is None:
        return []
    root = parsed.extent(parsed.tree.root_node)
    seen: dict[tuple[int, int], str] = {}
    for _, _, node_type, node in _structural_nodes(parsed):
        for s, e in _spans_of_node(parsed, node, max_chars):
            if e > s and (s, e) != root and (max_chars is None or e - s <= max_chars):
                seen.setdefault((s, e), node_type)
    return [Span(s, e, kind) for (s, e), kind in sorted(seen.items())]


def node_buckets(parsed: ParsedSource) -> dict[int, list]:
    """Structural nodes free of errors, bucketed by log2(byte length): {bucket: [node, ...]}.

    A file has far more small expressions than blocks, so `sample_parsed_span` picks a bucket
    uniformly, then a node in it. Computing this is most of a draw's cost: callers drawing many
    spans from one parse (context-level FIM) compute it once and pass it in.
    """
    buckets: dict[int, list] = {}
    for start_byte, end_byte, _, node in _structural_nodes(parsed):
        if end_byte > start_byte:
            buckets.setdefault((end_byte - start_byte).bit_length(), []).append(node)
    return buckets


def sample_parsed_span(
    parsed: ParsedSource,
    rng: random.Random,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    whole_node_rate: float = DEFAULT_WHOLE_NODE_RATE,
    buckets: dict[int, list] | None = None,
) -> Span | None:
    """One SFIM span of an already parsed text (see `sample_structured_span`); `buckets` = node_buckets(parsed)."""
    if buckets is None:
        buckets = node_buckets(parsed)
    if not buckets:
        return None  # no structural node, or only empty (MISSING-like) ones
    keys = sorted(buckets)
    root = parsed.extent(parsed.tree.root_node)
    for _ in range(_MAX_TRIES):
        node = rng.choice(buckets[rng.choice(keys)])
        start, end = parsed.extent(node)
        if rng.random() < whole_node_rate and end - start <= max_chars and (start, end) != root:
            return Span(start, end, node.type)
        starts, ends = _child_runs(parsed, node)
        if not starts:
            continue
        i, s = rng.choice(starts)
        choices = [e for j, e in ends if j >= i and e - s <= max_chars and (s, e) != root]
        if choices:
            return Span(s, rng.choice(choices), node.type)
    return None


def sample_structured_span(
    text: str,
    language: str | None,
    rng: random.Random,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    whole_node_rate: float = DEFAULT_WHOLE_NODE_RATE,
) -> Span | None:
    """Draw one SFIM span: a structural node (log-length bucketed), then a run of its children.

    With probability `whole_node_rate` the whole node is the middle. None when the text has no
    grammar, no structural node free of syntax errors, or no candidate fits in `max_chars` after a
    few tries.
    Example: "for i in range(20):\\n    if i % 5 == 0:\\n        print(1)\\n" may give the span of
    "i % 5 == 0:" (the README's SFIM example).
    """
    parsed = parse_source(text, language)
    if parsed is None:
        return None
    return sample_parsed_span(parsed, rng, max_chars=max_chars, whole_node_rate=whole_node_rate)


# ---------------------------------------------------------------------------------------------
# FIM-Eval task kinds


@cache
def _eval_query(language: str):
    import tree_sitter

    rules = RULES[language]
    patterns = [f"({t}) @single_line" for t in rules.simple_statements]
    patterns.append(rules.function_body)
    patterns += [f"({t}) @{kind}" for kind, types in rules.statements.items() for t in types]
    return tree_sitter.Query(tree_sitter_language(language), " ".join(patterns))


def _starts_line(text: str, start: int) -> bool:
    return not text[text.rfind("\n", 0, start) + 1 : start].strip()


def _is_alone_on_line(text: str, start: int, end: int) -> bool:
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    return "\n" not in text[start:end] and _starts_line(text, start) and not text[end:line_end].strip()


def find_parsed_spans(parsed: ParsedSource, kinds: tuple[str, ...] = EVAL_KINDS) -> dict[str, list[Span]]:
    """Eval spans of several kinds from one parse: {kind: spans sorted by start}."""
    unknown = [k for k in kinds if k not in EVAL_KINDS]
    if unknown:
        raise ValueError(f"unknown span kind(s) {unknown}; choose from {EVAL_KINDS}")
    out: dict[str, list[Span]] = {kind: [] for kind in kinds}
    rules = parsed.rules
    if rules is None or parsed.has_error:
        return out
    import tree_sitter

    captures = tree_sitter.QueryCursor(_eval_query(parsed.language)).captures(parsed.tree.root_node)
    for kind in kinds:
        for node in captures.get(kind, []):
            start, end = parsed.extent(node)
            if end <= start:
                continue
            if kind == "single_line":
                children = node.children
                if len(children) == 1 and children[0].type in rules.trivial_only_children:
                    continue  # a docstring or `...` is not a line of code
                if not _is_alone_on_line(parsed.text, start, end):
                    continue
            elif not _starts_line(parsed.text, start):
                continue  # a one-line body (`def f(): pass`) is not a method-body task
            out[kind].append(Span(start, end, kind))
        out[kind].sort(key=lambda sp: (sp.start, sp.end))
    return out


def find_spans(text: str, language: str | None, kind: str) -> list[Span]:
    """Spans of one FIM-Eval task kind (see EVAL_KINDS), sorted by start.

    single_line: a simple statement alone on its line, without its indentation; method_body: a
    function's block from its first statement to its end; *_statement: the whole statement.
    All but single_line start their line (one-line bodies such as `def f(): pass` are skipped).
    Empty when there is no grammar or the text has a syntax error.
    Example: find_spans("def f():\\n    return 1\\n", "Python", "method_body") -> [Span(13, 21, ...)]
    """
    if kind not in EVAL_KINDS:
        raise ValueError(f"unknown span kind {kind!r}; choose from {EVAL_KINDS}")
    parsed = parse_source(text, language)
    if parsed is None:
        return []
    return find_parsed_spans(parsed, (kind,))[kind]
