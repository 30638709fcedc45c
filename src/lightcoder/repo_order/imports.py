"""Import / include statements of one file, extracted with tree-sitter (for dependency ordering).

Each language has one query that captures its import nodes; the captured text is normalised into
`Import(kind, target, names)`, which `repo_order.dependency` resolves to files of the repository:

    Python      import a.b / from ..pkg import mod      Import("python", "..pkg", ("mod",))
    Java        import a.b.C; import a.b.*;             Import("java", "a.b.C")
    JS / TS     import x from "./y"; require("./y")     Import("js", "./y")
                export * from "./y"; import("./y")
    C / C++     #include "x/y.h" / <x/y.h>              Import("c", "x/y.h")
    Go          import "example.com/m/pkg"               Import("go", "example.com/m/pkg")
    Rust        mod foo; use crate::a::b::C;             Import("rust_mod", "foo"), Import("rust_use", "crate::a::b::C")

A file that does not parse still yields the imports tree-sitter recognised around the errors.
Example: extract_imports("from . import util\\n", "Python") -> [Import("python", ".", ("util",))]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from lightcoder.languages import has_grammar, tree_sitter_language, tree_sitter_parser

_QUERIES: dict[str, str] = {
    "Python": "(import_statement) @import (import_from_statement) @from",
    "Java": "(import_declaration) @import",
    "JavaScript": "(import_statement source: (string) @source) (export_statement source: (string) @source) "
                  "(call_expression function: [(identifier) (import)] @fn arguments: (arguments . (string) @source))",
    "C": "(preproc_include path: _ @source)",
    "Go": "(import_spec path: _ @source)",
    "Rust": "(mod_item name: (identifier) @mod) (use_declaration argument: _ @use)",
}
_QUERIES["TypeScript"] = _QUERIES["TSX"] = _QUERIES["JavaScript"]
_QUERIES["C++"] = _QUERIES["C"]
_JAVA_RE = re.compile(r"import\s+(?:static\s+)?(\w+(?:\s*\.\s*\w+)*(?:\s*\.\s*\*)?)")


@dataclass(frozen=True)
class Import:
    kind: str  # "python" | "java" | "js" | "c" | "go" | "rust_mod" | "rust_use"
    target: str  # module / path / spec as written (quotes removed)
    names: tuple[str, ...] = ()  # Python `from X import a, b`: ("a", "b") (may be submodules)


def supports(language: str | None) -> bool:
    return language in _QUERIES and has_grammar(language)


@cache
def _query(language: str):
    import tree_sitter

    return tree_sitter.Query(tree_sitter_language(language), _QUERIES[language])


def extract_imports(text: str, language: str | None) -> list[Import]:
    """Imports of one file in source order ([] for languages without a query or grammar)."""
    if not supports(language):
        return []
    import tree_sitter

    data = text.encode("utf-8", "surrogatepass")
    tree = tree_sitter_parser(language).parse(data)
    out: list[tuple[int, Import]] = []
    for _, captures in tree_sitter.QueryCursor(_query(language)).matches(tree.root_node):
        for name, nodes in captures.items():
            for node in nodes:
                imp = _normalise(language, name, node, captures)
                if imp is not None:
                    out.append((node.start_byte, imp))
    out.sort(key=lambda t: t[0])
    seen, result = set(), []
    for _, imp in out:
        if imp not in seen:
            seen.add(imp)
            result.append(imp)
    return result


def _text(node) -> str:
    return node.text.decode("utf-8", "replace")


def _normalise(language: str, capture: str, node, captures: dict) -> Import | None:
    if language == "Python":
        return _python(node, capture)
    if language == "Java":
        m = _JAVA_RE.match(_text(node))
        return Import("java", re.sub(r"\s+", "", m.group(1))) if m else None
    if language in ("JavaScript", "TypeScript", "TSX"):
        if capture != "source":
            return None
        fn = captures.get("fn")
        if fn and _text(fn[0]) not in ("require", "import"):
            return None
        spec = _text(node).strip("'\"`")
        return Import("js", spec) if spec else None
    if language in ("C", "C++"):
        spec = _text(node).strip().strip('"<>')
        return Import("c", spec) if spec else None
    if language == "Go":
        spec = _text(node).strip('"`')
        return Import("go", spec) if spec else None
    if language == "Rust":
        if capture == "mod":
            if node.parent.child_by_field_name("body") is not None:
                return None  # an inline `mod x { ... }` is not a file
            return Import("rust_mod", _text(node))
        path = re.split(r"::\s*[{*]", _text(node))[0]
        path = re.sub(r"\s+as\s+\w+$", "", path).replace(" ", "")
        return Import("rust_use", path) if path.split("::")[0] in ("crate", "self", "super") else None
    return None


def _python(node, capture: str) -> Import | None:
    if capture == "import":  # import a.b, c as d -> one Import per module
        names = [_text(c.child_by_field_name("name") or c) for c in node.children_by_field_name("name")]
        return Import("python", names[0]) if len(names) == 1 else _first_and_rest(names)
    module = node.child_by_field_name("module_name")
    if module is None:
        return None
    names = tuple(_text(c.child_by_field_name("name") or c).replace(" ", "")
                  for c in node.children_by_field_name("name"))
    return Import("python", _text(module).replace(" ", ""), names)


def _first_and_rest(names: list[str]) -> Import | None:
    # `import a, b` is rare; keep one Import whose names are the other modules ("" module = absolute)
    return Import("python", "", tuple(names)) if names else None
