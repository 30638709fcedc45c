"""Repository-level ordering: import resolution per language, dependency order on real repositories,
TF-IDF content chains."""

import glob
import os
import random
import sysconfig
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from lightcoder.data.records import SourceFile
from lightcoder.fim.sample_corpora import CACHE_ROOT
from lightcoder.languages import language_for_path
from lightcoder.pack_config import DEFAULT_WEIGHTS, STRATEGY_NAMES
from lightcoder.repo_order.content import order_by_content, tfidf_matrix
from lightcoder.repo_order.dependency import dependency_graph, dependency_order, order_by_dependency
from lightcoder.repo_order.imports import Import, extract_imports
from lightcoder.repo_order.strategies import STRATEGIES, choose_strategy, order_files


def repo(files: dict[str, str], language: str | None = None) -> list[SourceFile]:
    return [SourceFile(repo="r", path=p, language=language or language_for_path(p) or "", content=c)
            for p, c in files.items()]


def reaches(graph: dict[str, list[str]], start: str, goal: str) -> bool:
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in graph.get(node, []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def assert_dependencies_first(graph: dict[str, list[str]], order: list[str]) -> int:
    """Every import edge u -> v has v before u unless v imports u back (a cycle). Returns #edges."""
    pos = {p: i for i, p in enumerate(order)}
    assert sorted(order) == sorted(graph)
    checked = 0
    for user, deps in graph.items():
        for dep in deps:
            if pos[dep] > pos[user]:
                assert reaches(graph, dep, user), f"{dep} comes after {user}, which imports it"
            checked += 1
    return checked


# ----------------------------------------------------------------------------- extraction + resolution


@pytest.mark.parametrize("language, files, expected", [
    ("Python", {"p/__init__.py": "from .a import f\nfrom . import b\n", "p/a.py": "import p.b as pb\n",
                "p/b.py": "from .sub.c import x\nimport os\n", "p/sub/__init__.py": "", "p/sub/c.py": "from ..a import f\n"},
     {"p/__init__.py": ["p/a.py", "p/b.py"], "p/a.py": ["p/b.py"], "p/b.py": ["p/sub/c.py"],
      "p/sub/__init__.py": [], "p/sub/c.py": ["p/a.py"]}),
    ("Java", {"src/com/x/A.java": "package com.x;\nimport com.x.util.B;\nimport java.util.List;\nclass A {}\n",
              "src/com/x/util/B.java": "package com.x.util;\nimport static com.x.util.C.helper;\nclass B {}\n",
              "src/com/x/util/C.java": "package com.x.util;\nimport com.x.*;\nclass C {}\n"},
     {"src/com/x/A.java": ["src/com/x/util/B.java"], "src/com/x/util/B.java": ["src/com/x/util/C.java"],
      "src/com/x/util/C.java": ["src/com/x/A.java"]}),
    ("TypeScript", {"src/index.ts": "export * from './a';\nimport { b } from './lib/b.js';\nimport React from 'react';\n",
                    "src/a.ts": "const u = require('./lib');\nexport const a = 1;\n",
                    "src/lib/index.ts": "export {}\n", "src/lib/b.ts": "import('../a').then(() => 1);\n"},
     {"src/index.ts": ["src/a.ts", "src/lib/b.ts"], "src/a.ts": ["src/lib/index.ts"], "src/lib/index.ts": [],
      "src/lib/b.ts": ["src/a.ts"]}),
    ("C", {"src/main.c": '#include "util.h"\n#include <stdio.h>\n#include <proj/api.h>\nint main(void) { return 0; }\n',
           "src/util.h": "#pragma once\n#include \"../include/proj/api.h\"\n", "include/proj/api.h": "int f(void);\n"},
     {"src/main.c": ["include/proj/api.h", "src/util.h"], "src/util.h": ["include/proj/api.h"], "include/proj/api.h": []}),
    ("Go", {"cmd/tool/main.go": 'package main\nimport (\n\t"fmt"\n\t"example.com/m/internal/store"\n)\n',
            "internal/store/store.go": 'package store\nimport "example.com/m/internal/codec"\n',
            "internal/store/cache.go": "package store\n", "internal/codec/codec.go": "package codec\n"},
     {"cmd/tool/main.go": ["internal/store/cache.go", "internal/store/store.go"],
      "internal/store/store.go": ["internal/codec/codec.go"], "internal/store/cache.go": [],
      "internal/codec/codec.go": []}),
    ("Rust", {"src/lib.rs": "mod parse;\npub mod ast;\nmod inline { fn f() {} }\nuse crate::ast::Node;\n",
              "src/parse.rs": "use super::ast::{Node, Kind};\nuse std::fmt;\n", "src/ast/mod.rs": "mod node;\n",
              "src/ast/node.rs": "use crate::parse;\n"},
     {"src/lib.rs": ["src/ast/mod.rs", "src/parse.rs"], "src/parse.rs": ["src/ast/mod.rs"],
      "src/ast/mod.rs": ["src/ast/node.rs"], "src/ast/node.rs": ["src/parse.rs"]}),
])
def test_imports_resolve_to_repository_files(language, files, expected):
    assert dependency_graph(repo(files, language)) == expected


def test_extract_imports_forms():
    assert extract_imports("from . import util, other as o\nimport a.b\n", "Python") == [
        Import("python", ".", ("util", "other")), Import("python", "a.b")]
    assert extract_imports('#include <vector>\n#include "x/y.hpp"\n', "C++") == [
        Import("c", "vector"), Import("c", "x/y.hpp")]
    assert extract_imports("const a = other('./x'); export { b } from \"./b\";\n", "JavaScript") == [
        Import("js", "./b")]
    assert extract_imports("x = 1\n", "Kotlin") == []


def test_dependency_order_breaks_cycles_and_is_seeded():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["d"], "f": []}
    for seed in range(30):
        order = dependency_order(graph, random.Random(seed))
        assert_dependencies_first(graph, order)
        assert order.index("d") < min(order.index("c"), order.index("e"))  # its direct users
        assert order == dependency_order(graph, random.Random(seed))
    assert len({tuple(dependency_order(graph, random.Random(s))) for s in range(30)}) > 3
    deep = {str(i): [str(i + 1)] for i in range(5000)} | {"5000": []}  # deeper than the recursion limit
    assert dependency_order(deep, random.Random(0))[:3] == ["5000", "4999", "4998"]


# ----------------------------------------------------------------------------- real repositories


def from_dir(root: str, name: str, language: str | None = None, limit: int = 250) -> list[SourceFile]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            rel = f"{name}/{os.path.relpath(os.path.join(dirpath, fn), root)}"
            lang = language or language_for_path(rel)
            if lang is None or (language is None and lang not in ("Python", "JavaScript", "TypeScript", "Go", "Rust")):
                continue
            if rel.endswith((".d.ts", "_test.go")):
                continue
            try:
                text = Path(dirpath, fn).read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            out.append(SourceFile(repo=name, path=rel, language=lang, content=text))
    return out[:limit]


def java_repo() -> list[SourceFile]:
    archives = [a for a in sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip")) if os.path.isfile(a)]
    if not archives:
        return []
    with zipfile.ZipFile(archives[0]) as zf:
        names = [n for n in zf.namelist() if n.startswith("java.base/java/util/concurrent/") and n.endswith(".java")]
        return [SourceFile(repo="jdk", path=n, language="Java", content=zf.read(n).decode()) for n in names]


def _first(pattern: str) -> str:
    found = sorted(glob.glob(pattern))
    return found[-1] if found else "/nonexistent"


STDLIB = sysconfig.get_paths()["stdlib"]
REAL_REPOS = {
    "Python": lambda: from_dir(f"{STDLIB}/email", "email") + from_dir(f"{STDLIB}/asyncio", "asyncio"),
    "Java": java_repo,
    "JavaScript": lambda: from_dir("/usr/lib/node_modules/npm/lib", "npm"),
    "TypeScript": lambda: from_dir(str(CACHE_ROOT / "rxjs-7/src"), "rxjs"),
    "C": lambda: from_dir("/usr/include/linux", "linux", "C", limit=200),
    "C++": lambda: [f for f in from_dir(_first("/usr/include/c++/*/bits"), "bits", "C++")
                    if len(f.content) < 40_000][:80],
    "Go": lambda: from_dir(_first("/usr/share/go-*/src/net/http"), "http", limit=120),
    "Rust": lambda: from_dir(_first("/usr/share/cargo/registry/regex-1*/src"), "regex"),
}


@pytest.mark.parametrize("language", sorted(REAL_REPOS))
def test_dependencies_come_first_on_real_repositories(language):
    files = REAL_REPOS[language]()
    if len(files) < 10:
        pytest.skip(f"no {language} repository on this machine")
    graph = dependency_graph(files)
    with_deps = sum(bool(deps) for deps in graph.values())
    assert with_deps >= 0.25 * len(files), f"imports of only {with_deps}/{len(files)} files resolved"
    for seed in range(2):
        order = [f.path for f in order_by_dependency(files, random.Random(seed))]
        assert assert_dependencies_first(graph, order) >= with_deps


# ----------------------------------------------------------------------------- content + mix


def test_content_chain_puts_similar_files_together():
    topics = {"parser": "token lexer grammar parse_expression ast_node", "network": "socket connect packet "
              "send_bytes recv_bytes", "storage": "database cursor commit rollback transaction"}
    files = repo({f"r/{t}_{i}.py": f"def f{i}():\n    return '{words} {i}'\n" for t, words in topics.items()
                  for i in range(5)})
    for seed in range(10):
        order = [f.path.split("/")[1].split("_")[0] for f in order_by_content(files, random.Random(seed))]
        switches = sum(a != b for a, b in zip(order, order[1:]))
        assert switches == 2, order  # each topic is one contiguous run
    x = tfidf_matrix([f.content for f in files])
    assert x.shape[0] == 15 and abs(float((x[0] ** 2).sum()) - 1) < 1e-5


def test_content_clusters_big_repositories():
    words = [f"ident{i}" for i in range(60)]
    rng = random.Random(0)
    files = repo({f"r/m{i:04d}.py": " ".join(words[(i % 6) * 10:(i % 6) * 10 + 10]) + f" u{i}\n" for i in range(900)})
    order = order_by_content(files, rng)
    assert sorted(f.path for f in order) == sorted(f.path for f in files)
    groups = [int(f.path[3:7]) % 6 for f in order]
    assert sum(a != b for a, b in zip(groups, groups[1:])) < 60  # mostly contiguous topics


def test_mix_draws_each_strategy():
    rng = random.Random(0)
    counts = Counter(choose_strategy(DEFAULT_WEIGHTS, rng) for _ in range(4000))
    for name, weight in DEFAULT_WEIGHTS.items():
        assert abs(counts[name] / 4000 - weight) < 0.03
    assert set(DEFAULT_WEIGHTS) == set(STRATEGIES)
    assert tuple(STRATEGIES) == STRATEGY_NAMES  # pack_config validates pack.sampling without loading them
    fs = repo({"r/a.py": "import r.b\n", "r/b.py": "x = 1\n"})
    assert [f.path for f in order_files(fs, "dependency", rng)] == ["r/b.py", "r/a.py"]
