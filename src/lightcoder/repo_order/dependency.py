"""Dependency ordering: the in-repository import graph, dependencies before the files that use them.

1. `repo_order.imports` extracts each file's imports with tree-sitter.
2. `RepoIndex.resolve` maps each import to files of the same repository (anything outside the
   repository, e.g. the standard library or node_modules, is ignored):
   Python dotted / relative modules (pkg/mod.py, pkg/mod/__init__.py); Java classes and `pkg.*`;
   relative JS/TS specifiers with the usual extensions and index files (TS's "./x.js" -> x.ts);
   C/C++ includes next to the includer, else by path suffix (nearest directory wins); Go import
   paths -> the directory whose path they end with; Rust `mod x;` and `use crate::/super::/self::`.
3. `dependency_order` is a depth-first post-order from randomly chosen roots over randomly ordered
   edges: every dependency is emitted before its user unless the two are on one import cycle (the
   back edge of a cycle is the one dropped), and a file's dependencies land right before it
   ("globally random, locally dependent").

Example: a.py imports b, b imports c -> [c.py, b.py, a.py] (plus unrelated files anywhere).
"""

from __future__ import annotations

import posixpath
import random
from collections import defaultdict
from typing import TYPE_CHECKING

from lightcoder.repo_order.imports import Import, extract_imports

if TYPE_CHECKING:
    from lightcoder.data.records import SourceFile

_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
_PY_EXTENSIONS = (".py", ".pyi")


def _stem_parts(path: str) -> tuple[str, ...]:
    return tuple(posixpath.splitext(path)[0].split("/"))


class RepoIndex:
    """Lookup tables over the paths of one repository, for resolving imports to files."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = set(paths)
        self.python: dict[tuple[str, ...], list[str]] = defaultdict(list)  # module suffix -> files
        self.java: dict[tuple[str, ...], list[str]] = defaultdict(list)  # class path suffix -> files
        self.by_suffix: dict[tuple[str, ...], list[str]] = defaultdict(list)  # path suffix -> files
        self.dirs: dict[tuple[str, ...], list[str]] = defaultdict(list)  # directory -> files
        self.dir_suffix: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        for path in sorted(paths):
            parts = tuple(path.split("/"))
            self.dirs[parts[:-1]].append(path)
            for k in range(1, min(len(parts), 6) + 1):
                self.by_suffix[parts[-k:]].append(path)
            ext = posixpath.splitext(path)[1]
            if ext in _PY_EXTENSIONS:
                mod = _stem_parts(path)
                if mod[-1] == "__init__":
                    mod = mod[:-1]
                for k in range(1, len(mod) + 1):
                    self.python[mod[-k:]].append(path)
            elif ext == ".java":
                stem = _stem_parts(path)
                for k in range(1, len(stem) + 1):
                    self.java[stem[-k:]].append(path)
        for d in self.dirs:
            for k in range(1, len(d) + 1):
                self.dir_suffix[d[-k:]].append(d)

    # ------------------------------------------------------------------ per language

    def resolve(self, importer: str, imp: Import) -> list[str]:
        """Files of this repository that `imp` (written in file `importer`) refers to."""
        found = getattr(self, f"_{imp.kind}")(importer, imp)
        return sorted(set(found) - {importer})

    def _python(self, importer: str, imp: Import) -> list[str]:
        if not imp.target:  # import a, b
            return [f for name in imp.names for f in self._python_module(importer, name)[:1]]
        out: list[str] = []
        for name in imp.names:
            sub = imp.target + name if imp.target.endswith(".") else f"{imp.target}.{name}"
            out += self._python_module(importer, sub)[:1]
        if len(out) < len(imp.names) or not imp.names:
            out += self._python_module(importer, imp.target)[:1]
        return out

    def _python_module(self, importer: str, module: str) -> list[str]:
        dots = len(module) - len(module.lstrip("."))
        parts = tuple(p for p in module[dots:].split(".") if p)
        if dots:  # relative: from the importer's package, up dots - 1 levels
            base = tuple(importer.split("/")[:-1])
            if dots - 1 > len(base):
                return []
            full = base[: len(base) - (dots - 1)] + parts
            return [p for p in (posixpath.join(*full) + ext for ext in _PY_EXTENSIONS) if p in self.paths] + \
                [p for p in (posixpath.join(*full, "__init__" + ext) for ext in _PY_EXTENSIONS)
                 if full and p in self.paths]
        return sorted(self.python.get(parts, []), key=len) if parts else []

    def _java(self, importer: str, imp: Import) -> list[str]:
        parts = tuple(imp.target.split("."))
        if parts[-1] == "*":
            dirs = self.dir_suffix.get(parts[:-1], [])
            return [f for d in dirs for f in self.dirs[d] if f.endswith(".java")]
        for k in range(len(parts), 0, -1):  # a.b.C.method (static) -> a.b.C
            if parts[k - 1][:1].isupper() and parts[:k] in self.java:
                return sorted(self.java[parts[:k]], key=len)[:1]
        return []

    def _js(self, importer: str, imp: Import) -> list[str]:
        if not imp.target.startswith("."):
            return []  # a package, not a file of this repository
        base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), imp.target))
        stems = [base]
        root, ext = posixpath.splitext(base)
        if ext in (".js", ".jsx", ".mjs", ".cjs"):
            stems.append(root)  # TS ESM writes "./x.js" for x.ts
        for stem in stems:
            for cand in [stem] + [stem + e for e in _JS_EXTENSIONS] + [f"{stem}/index{e}" for e in _JS_EXTENSIONS]:
                if cand in self.paths:
                    return [cand]
        return []

    def _c(self, importer: str, imp: Import) -> list[str]:
        local = posixpath.normpath(posixpath.join(posixpath.dirname(importer), imp.target))
        if local in self.paths:
            return [local]
        parts = tuple(p for p in imp.target.split("/") if p not in (".", ""))
        if ".." in parts or not parts:
            return []
        candidates = self.by_suffix.get(parts[-6:], [])
        if not candidates:
            return []
        here = importer.split("/")
        # nearest directory wins: longest common prefix with the includer, then the shortest path
        return [max(candidates, key=lambda p: (_common_prefix(p.split("/"), here), -len(p)))]

    def _go(self, importer: str, imp: Import) -> list[str]:
        parts = tuple(imp.target.split("/"))
        for k in range(len(parts), 0, -1):  # the longest import-path suffix that is a directory
            dirs = self.dir_suffix.get(parts[-k:], [])
            if dirs:
                d = min(dirs, key=len)
                return [f for f in self.dirs[d] if f.endswith(".go") and not f.endswith("_test.go")]
        return []

    def _rust_mod(self, importer: str, imp: Import) -> list[str]:
        directory, name = posixpath.split(importer)
        if name not in ("lib.rs", "main.rs", "mod.rs"):
            directory = posixpath.join(directory, posixpath.splitext(name)[0])
        cands = [posixpath.join(directory, imp.target + ".rs"), posixpath.join(directory, imp.target, "mod.rs")]
        return [c for c in cands if c in self.paths][:1]

    def _rust_use(self, importer: str, imp: Import) -> list[str]:
        parts = imp.target.split("::")
        if parts[0] == "crate":
            base = self._rust_crate_root(importer)
        else:  # self:: / super:: relative to the importer's module directory
            directory, name = posixpath.split(importer)
            if name not in ("lib.rs", "main.rs", "mod.rs"):
                directory = posixpath.join(directory, posixpath.splitext(name)[0])
            while parts and parts[0] in ("self", "super"):
                if parts[0] == "super":
                    directory = posixpath.dirname(directory)
                parts = parts[1:]
            base, parts = directory, ["self"] + parts
        if base is None:
            return []
        rest = parts[1:]
        for k in range(len(rest), 0, -1):  # longest module path that is a file: a::b::C -> a/b.rs
            stem = posixpath.join(base, *rest[:k])
            for cand in (stem + ".rs", posixpath.join(stem, "mod.rs")):
                if cand in self.paths:
                    return [cand]
        return []

    def _rust_crate_root(self, importer: str) -> str | None:
        directory = posixpath.dirname(importer)
        while True:
            for root in ("lib.rs", "main.rs"):
                if posixpath.join(directory, root) in self.paths:
                    return directory
            if not directory:
                return None
            directory = posixpath.dirname(directory)


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def dependency_graph(files: list[SourceFile]) -> dict[str, list[str]]:
    """path -> sorted in-repository paths it imports (self-imports dropped)."""
    index = RepoIndex([f.path for f in files])
    graph: dict[str, list[str]] = {}
    for f in files:
        deps: set[str] = set()
        for imp in extract_imports(f.content, f.language):
            deps.update(index.resolve(f.path, imp))
        graph[f.path] = sorted(deps)
    return graph


def order_by_dependency(files: list[SourceFile], rng: random.Random) -> list[SourceFile]:
    """Files with their in-repository imports first (see module docstring)."""
    by_path = {f.path: f for f in files}
    graph = dependency_graph(sorted(files, key=lambda f: f.path))
    return [by_path[p] for p in dependency_order(graph, rng)]


def dependency_order(graph: dict[str, list[str]], rng: random.Random) -> list[str]:
    """Depth-first post-order: roots in random order, each node's dependencies in random order.

    Every edge u -> v (u imports v) has v before u, except edges that close a cycle.
    Example: dependency_order({"a": ["b"], "b": ["c"], "c": []}, rng) -> ["c", "b", "a"]
    """
    roots = sorted(graph)
    rng.shuffle(roots)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = emitted
    out: list[str] = []
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, _shuffled(graph[root], rng))]
        while stack:  # iterative: import chains can be deeper than Python's recursion limit
            node, deps = stack[-1]
            while deps and deps[-1] in state:
                deps.pop()  # emitted already, or on the stack (a cycle: drop this back edge)
            if deps:
                dep = deps.pop()
                state[dep] = 1
                stack.append((dep, _shuffled(graph.get(dep, []), rng)))
            else:
                stack.pop()
                state[node] = 2
                out.append(node)
    return out


def _shuffled(items: list[str], rng: random.Random) -> list[str]:
    out = list(items)
    rng.shuffle(out)
    return out
