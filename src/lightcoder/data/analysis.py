"""Static analysis (aiXcoder step 7): drop files with high-risk bugs, every rule named and counted.

Python: ruff (pip install ruff), a batch of files per call, with the rules in PYTHON_RULES -
the same run also reports syntax errors, which the syntax step uses for Python (quality.py) -
bugs that raise or misbehave at run time (aiXcoder's own example, "__init__ should not return a
value", is PLE0101). F821 (undefined name) is left out by default: on the stdlib it fires in
ssl.py, inspect.py and re/_constants.py, whose names come from `globals().update(...)`.
Without ruff on PATH or next to the interpreter, Python files pass and stats say so.

Java, JavaScript/TypeScript, C and C++: tree-sitter queries (TS_RULES), since no analyser for
them installs from PyPI. Each rule is a query plus an optional check on the captured nodes:

    self-assignment            x = x;  (Java, JS, C, C++)
    string-reference-equality  s == "literal"  (Java: compares references, not text)
    compare-with-nan           x === NaN  (JS/TS: always false)
    dangerous-gets             gets(buf)  (C/C++: unbounded read, removed in C11)

Example: ts_rule_hits("class A { void f(){ x = x; } }", "Java") -> {"self-assignment": 1}
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lightcoder.languages import has_grammar, tree_sitter_language, tree_sitter_parser

PYTHON_RULES: tuple[str, ...] = (
    "F632",  # is-literal: `x is "a"` compares identity
    "F701", "F702",  # break / continue outside a loop
    "F704", "F706",  # yield / return outside a function
    "F822",  # undefined name in __all__
    "F631",  # assert on a non-empty tuple: always true
    "F502", "F503", "F504", "F505", "F506", "F507", "F508", "F509",  # % format mismatches
    "F521", "F522", "F523", "F524", "F525",  # str.format mismatches
    "F601", "F602",  # dict literal repeats a key with different values
    "F622", "F633",  # two starred targets; print >> file
    "PLE0100", "PLE0101",  # yield / return value in __init__
    "PLE0117", "PLE0118",  # nonlocal without binding; name used before `global`
    "PLE1142",  # await outside async
    "PLE0604", "PLE0605",  # invalid __all__
    "PLE0302",  # special method with the wrong number of parameters
    "PLE2502",  # bidirectional unicode control characters (trojan source)
    "B002",  # ++x (no increment operator in Python)
)

# rule -> (languages, query, kind of post-check)
TS_RULES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "self-assignment": (("Java", "JavaScript", "TypeScript", "C", "C++"),
                        "(assignment_expression left: (_) @l right: (_) @r) @node", "same_text"),
    "string-reference-equality": (("Java",), '(binary_expression left: (_) @l operator: ["==" "!="]'
                                  " right: (string_literal) @r) @node", ""),
    "compare-with-nan": (("JavaScript", "TypeScript"),
                         '(binary_expression operator: ["==" "===" "!=" "!=="] right: (identifier)'
                         ' @r (#eq? @r "NaN")) @node', ""),
    "dangerous-gets": (("C", "C++"), '(call_expression function: (identifier) @f (#eq? @f "gets"))'
                       " @node", ""),
}


@dataclass(kw_only=True)
class AnalysisConfig:
    enabled: bool = True
    python_rules: list[str] = field(default_factory=lambda: list(PYTHON_RULES))
    ts_rules: list[str] = field(default_factory=lambda: list(TS_RULES))

    def __post_init__(self) -> None:
        unknown = [r for r in self.ts_rules if r not in TS_RULES]
        if unknown:
            raise ValueError(f"ts_rules: unknown rules {unknown}; known: {sorted(TS_RULES)}")


@cache
def ruff_path() -> str | None:
    """The ruff executable (next to this interpreter first), or None when not installed."""
    local = Path(sys.executable).parent / "ruff"
    return str(local) if local.exists() else shutil.which("ruff")


RUFF_TARGET = "py314"  # the newest grammar: only real syntax errors, never "too new for 3.9"


def ruff_check(files: dict[str, str], rules: list[str]
               ) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """({key: {rule: hits}}, {key: first syntax error}) for Python sources given as {key: text};
    one ruff run for all of them. Empty results when ruff is not installed."""
    ruff = ruff_path()
    if ruff is None or not files:
        return {}, {}
    with tempfile.TemporaryDirectory(prefix="lc-ruff-") as tmp:
        names = {}
        for i, (key, text) in enumerate(files.items()):
            name = os.path.join(tmp, f"f{i}.py")
            with open(name, "w", encoding="utf-8") as fh:
                fh.write(text)
            names[name] = key
        out = subprocess.run([ruff, "check", "--isolated", "--no-cache", "--exit-zero",
                              "--target-version", RUFF_TARGET, "--select",
                              ",".join(rules or ["F632"]), "--output-format", "json", tmp],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"ruff failed ({out.returncode}): {out.stderr[-500:]}")
        hits: dict[str, dict[str, int]] = {}
        syntax: dict[str, str] = {}
        for item in json.loads(out.stdout or "[]"):
            key = names.get(item["filename"]) or names.get(os.path.realpath(item["filename"]))
            if key is None:
                continue
            code = item.get("code")
            if code in (None, "invalid-syntax") or str(item.get("message", "")).startswith(
                    "SyntaxError"):
                if key not in syntax:
                    row = (item.get("location") or {}).get("row", "?")
                    syntax[key] = f"line {row}: {item.get('message', '')[:80]}"
            elif code in rules:
                per = hits.setdefault(key, {})
                per[code] = per.get(code, 0) + 1
        return hits, syntax


def ruff_hits(files: dict[str, str], rules: list[str]) -> dict[str, dict[str, int]]:
    """{key: {rule: hits}} of `ruff_check` (syntax errors left out)."""
    return ruff_check(files, rules)[0] if rules else {}


@cache
def _query(rule: str, language: str):
    from tree_sitter import Query, QueryCursor

    return QueryCursor(Query(tree_sitter_language(language), TS_RULES[rule][1]))


def ts_rule_hits(text: str, language: str, rules: list[str] | tuple[str, ...] = tuple(TS_RULES),
                 tree=None) -> dict[str, int]:
    """{rule: hits} of the tree-sitter rules that apply to the language."""
    active = [r for r in rules if language in TS_RULES[r][0]]
    if not active or not has_grammar(language):
        return {}
    data = text.encode("utf-8")
    root = (tree or tree_sitter_parser(language).parse(data)).root_node
    hits: dict[str, int] = {}
    for rule in active:
        n = 0
        for _, caps in _query(rule, language).matches(root):
            if TS_RULES[rule][2] == "same_text":
                left, right = caps["l"][0], caps["r"][0]
                op = data[left.end_byte: right.start_byte].strip()
                if op != b"=" or left.text != right.text or left.type not in (
                        "identifier", "field_access", "member_expression", "field_expression"):
                    continue
            n += 1
        if n:
            hits[rule] = n
    return hits
