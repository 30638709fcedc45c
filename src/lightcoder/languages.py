"""The single language table: file extension -> language -> comment syntax -> tree-sitter grammar.

aiXcoder-7B starts every code sequence with two comment lines in the file's own comment syntax
(research/aixcoder-7b.md §1.3):

    # the file path is: pkg/mod.py
    # the code file is written by Python

The extension is matched with the regex `(\\.\\w+)$` and looked up in an extension table (GitHub
linguist names); unknown extensions get no header at all. This module owns that table; the header
text itself is built by `lightcoder.tokenizer.header`, parsing by `lightcoder.fim.spans`.

Example: language_for_path("a/b.py") -> "Python"; comment("Python", "x") -> "# x"
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache

_EXTENSION_RE = re.compile(r"(\.\w+)$")


@dataclass(frozen=True)
class Language:
    name: str  # GitHub-linguist name, as written in aiXcoder's header ("Python", "C++")
    extensions: tuple[str, ...]
    comment_open: str  # "# " / "// " / "<!-- "
    comment_close: str = ""  # "" / " -->" / " *)"
    grammar_module: str | None = None  # per-language tree-sitter wheel, e.g. "tree_sitter_python"
    grammar_function: str = "language"  # function of that module returning the grammar pointer


# One row per language. Class-1 languages of aiXcoder first (assets/main_supported_lang.txt).
LANGUAGES: tuple[Language, ...] = (
    Language("Python", (".py", ".pyi", ".pyw"), "# ", grammar_module="tree_sitter_python"),
    Language("Java", (".java",), "// ", grammar_module="tree_sitter_java"),
    Language("C++", (".cpp", ".cc", ".cxx", ".hpp", ".hh", ".hxx"), "// ",
             grammar_module="tree_sitter_cpp"),
    Language("C", (".c", ".h"), "// ", grammar_module="tree_sitter_c"),
    Language("C#", (".cs",), "// ", grammar_module="tree_sitter_c_sharp"),
    Language("Go", (".go",), "// ", grammar_module="tree_sitter_go"),
    Language("JavaScript", (".js", ".mjs", ".cjs", ".jsx"), "// ",
             grammar_module="tree_sitter_javascript"),
    Language("TypeScript", (".ts", ".mts", ".cts"), "// ",
             grammar_module="tree_sitter_typescript", grammar_function="language_typescript"),
    # linguist's name for .tsx; the TypeScript grammar rejects JSX, so TSX has its own grammar
    Language("TSX", (".tsx",), "// ", grammar_module="tree_sitter_typescript", grammar_function="language_tsx"),
    Language("Kotlin", (".kt", ".kts"), "// "),
    Language("Rust", (".rs",), "// ", grammar_module="tree_sitter_rust"),
    Language("Ruby", (".rb",), "# ", grammar_module="tree_sitter_ruby"),
    Language("PHP", (".php",), "// "),
    Language("Swift", (".swift",), "// "),
    Language("Scala", (".scala",), "// "),
    Language("Shell", (".sh", ".bash", ".zsh"), "# "),
    Language("PowerShell", (".ps1", ".psm1"), "# "),
    Language("Perl", (".pl", ".pm"), "# "),
    Language("R", (".r", ".R"), "# "),
    Language("Julia", (".jl",), "# "),
    Language("CMake", (".cmake",), "# "),
    Language("Makefile", (".mk", ".mak"), "# "),
    Language("YAML", (".yml", ".yaml"), "# "),
    Language("TOML", (".toml",), "# "),
    Language("SQL", (".sql",), "-- "),
    Language("Lua", (".lua",), "-- "),
    Language("Haskell", (".hs",), "-- "),
    Language("Cuda", (".cu", ".cuh"), "// "),
    Language("Dart", (".dart",), "// "),
    Language("Protocol Buffer", (".proto",), "// "),
    Language("Zig", (".zig",), "// "),
    Language("OCaml", (".ml", ".mli"), "(* ", " *)"),
    Language("HTML", (".html", ".htm"), "<!-- ", " -->"),
    Language("Markdown", (".md", ".markdown"), "<!-- ", " -->"),
    Language("Vue", (".vue",), "<!-- ", " -->"),
    Language("CSS", (".css",), "/* ", " */"),
    Language("Emacs Lisp", (".el",), "; "),
    Language("Common Lisp", (".lisp", ".lsp"), "; "),
    Language("Clojure", (".clj", ".cljs", ".cljc"), "; "),
    Language("Erlang", (".erl", ".hrl"), "% "),
    Language("Elixir", (".ex", ".exs"), "# "),
    Language("Fortran", (".f90", ".f95", ".f03"), "! "),
)

BY_NAME: dict[str, Language] = {lang.name: lang for lang in LANGUAGES}
BY_EXTENSION: dict[str, Language] = {ext: lang for lang in LANGUAGES for ext in lang.extensions}


def language_for_path(path: str) -> str | None:
    """Language name for a file path by its extension, or None when the extension is unknown.

    Example: language_for_path("Lib/json/decoder.py") -> "Python"; language_for_path("README") -> None
    """
    match = _EXTENSION_RE.search(path)
    if match is None:
        return None
    lang = BY_EXTENSION.get(match.group(1)) or BY_EXTENSION.get(match.group(1).lower())
    return lang.name if lang else None


def comment(language: str, text: str) -> str:
    """One comment line (without newline) in the language's own syntax.

    Example: comment("OCaml", "hi") -> "(* hi *)"
    """
    lang = get_language(language)
    return f"{lang.comment_open}{text}{lang.comment_close}"


def get_language(name: str) -> Language:
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(BY_NAME))
        raise ValueError(f"unknown language {name!r}; known languages: {known}") from None


def has_grammar(language: str) -> bool:
    """True when a tree-sitter grammar wheel for the language is installed."""
    lang = BY_NAME.get(language)
    if lang is None or lang.grammar_module is None:
        return False
    try:
        importlib.import_module(lang.grammar_module)
    except ImportError:
        return False
    return True


@cache
def tree_sitter_language(language: str):
    """The `tree_sitter.Language` for a language name; raises ValueError when no grammar is installed."""
    import tree_sitter

    lang = get_language(language)
    if lang.grammar_module is None:
        raise ValueError(f"no tree-sitter grammar is configured for {language}")
    try:
        module = importlib.import_module(lang.grammar_module)
    except ImportError:
        pip_name = lang.grammar_module.replace("_", "-")
        raise ValueError(
            f"the tree-sitter grammar for {language} is not installed: pip install {pip_name}"
        ) from None
    return tree_sitter.Language(getattr(module, lang.grammar_function)())


@cache
def tree_sitter_parser(language: str):
    """A cached `tree_sitter.Parser` for a language (parsers are not thread-safe: one per process)."""
    import tree_sitter

    return tree_sitter.Parser(tree_sitter_language(language))
