"""Hit counts of the tree-sitter bug rules on real corpora, with sample hits to eyeball.

    python benchmarks/analysis_rule_hits.py --jdk /usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip \
        --c /usr/include --js /usr/lib/node_modules --samples 3

Prints, per language, files scanned, MB, the rules' time as a multiple of the parse time
(which the pipeline's syntax step pays anyway), and per rule: hits, files hit, and the first
samples as `path:line: source line`. The numbers in docs/data.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import re
import time
import zipfile
from collections import defaultdict

from lightcoder.data.analysis_rules import TS_RULES, rule_matches
from lightcoder.data.config import CPPCHECK_RULES, ESLINT_RULES
from lightcoder.languages import tree_sitter_parser

CPP_HINT = re.compile(r"^\s*(template\s*<|namespace\s+\w+\s*\{|class\s+\w+[^;]*\{)", re.MULTILINE)


def java_files(src_zip: str):
    with zipfile.ZipFile(src_zip) as zf:
        for name in zf.namelist():
            if name.endswith(".java"):
                yield name, "Java", zf.read(name).decode("utf-8", "replace")


def tree_files(root: str, exts: dict[str, str]):
    """(path, language, text) under root; `.d.ts` declarations and `.min.js` are skipped."""
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        for name in sorted(names):
            ext = os.path.splitext(name)[1]
            if ext not in exts or name.endswith((".min.js", ".d.ts")):
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError):
                continue
            language = exts[ext]
            if ext == ".h" and CPP_HINT.search(text):
                language = "C++"
            yield path, language, text


def scan(files, stats, samples: int, limit_mb: float):
    for path, language, text in files:
        data = text.encode("utf-8")
        st = stats[language]
        if st["mb"] > limit_mb:
            continue
        st["files"] += 1
        st["mb"] += len(data) / 1e6
        t0 = time.perf_counter()
        tree = tree_sitter_parser(language).parse(data)
        t1 = time.perf_counter()
        st["parse_s"] += t1 - t0
        per_file = set()
        for name, node in rule_matches(text, language, tree=tree):
            st["hits"][name] += 1
            per_file.add(name)
            if len(st["samples"][name]) < samples:
                line = data.splitlines()[node.start_point[0]].decode("utf-8", "replace")
                st["samples"][name].append(f"{path}:{node.start_point[0] + 1}: "
                                           f"{line.strip()[:100]}")
        for name in per_file:
            st["hit_files"][name] += 1
        st["s"] += time.perf_counter() - t1


def run_backend(name: str, roots: list[str], samples: int, limit_mb: float) -> None:
    """An optional external analyser (cppcheck or eslint) on the same files, 400 per call."""
    from lightcoder.data import analysis

    if name == "cppcheck":
        exts = {".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".hpp": "C++", ".hh": "C++",
                ".tcc": "C++"}
    else:
        exts = {".js": "JavaScript", ".cjs": "JavaScript", ".mjs": "JavaScript"}
    mb, chosen = 0.0, []
    for root in roots:
        for path, language, text in tree_files(root, exts):
            if mb > limit_mb:
                break
            mb += len(text.encode("utf-8")) / 1e6
            chosen.append((path, language, text))
    hits, hit_files, shown = defaultdict(int), defaultdict(int), defaultdict(list)
    t0 = time.perf_counter()
    for start in range(0, len(chosen), 400):
        part = chosen[start:start + 400]
        if name == "cppcheck":
            found = analysis.cppcheck_hits({p: (t, lang) for p, lang, t in part},
                                           list(CPPCHECK_RULES))
        else:
            found = analysis.eslint_hits({p: t for p, _, t in part}, list(ESLINT_RULES))
        for path, per in found.items():
            for rule, n in per.items():
                hits[rule] += n
                hit_files[rule] += 1
                if len(shown[rule]) < samples:
                    shown[rule].append(path)
    took = time.perf_counter() - t0
    print(f"\n## {name}: {len(chosen)} files, {mb:.1f} MB, {took:.1f} s wall")
    for rule in sorted(hits, key=lambda r: -hits[r]):
        print(f"  {rule:40s} hits {hits[rule]:5d}  files {hit_files[rule]:5d}  {shown[rule]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jdk")
    ap.add_argument("--c", help="a tree of .c/.h/.cc/.cpp/.hpp files (e.g. /usr/include)")
    ap.add_argument("--js", nargs="+", default=[],
                    help="trees of .js/.mjs/.cjs/.ts files (e.g. /usr/lib/node_modules)")
    ap.add_argument("--cppcheck", action="store_true",
                    help="also run the optional cppcheck backend on the --c tree")
    ap.add_argument("--eslint", action="store_true",
                    help="also run the optional eslint backend on the --js trees")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--limit-mb", type=float, default=1e9, help="stop a language after this many MB")
    args = ap.parse_args()
    stats = defaultdict(lambda: {"files": 0, "mb": 0.0, "s": 0.0, "parse_s": 0.0,
                                 "hits": defaultdict(int),
                                 "hit_files": defaultdict(int), "samples": defaultdict(list)})
    if args.jdk:
        scan(java_files(args.jdk), stats, args.samples, args.limit_mb)
    if args.c:
        scan(tree_files(args.c, {".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++",
                                 ".hpp": "C++", ".hh": "C++", ".tcc": "C++"}),
             stats, args.samples, args.limit_mb)
    for js_root in args.js:
        scan(tree_files(js_root, {".js": "JavaScript", ".mjs": "JavaScript",
                                  ".cjs": "JavaScript", ".ts": "TypeScript"}),
             stats, args.samples, args.limit_mb)
    if args.cppcheck and args.c:
        run_backend("cppcheck", [args.c], args.samples, args.limit_mb)
    if args.eslint and args.js:
        run_backend("eslint", args.js, args.samples, args.limit_mb)
    for language, st in stats.items():
        print(f"\n## {language}: {st['files']} files, {st['mb']:.1f} MB; rules {st['s']:.1f} s"
              f" = {st['s'] / max(st['parse_s'], 1e-9):.2f}x the parse ({st['parse_s']:.1f} s)")
        for name in TS_RULES:
            if language in TS_RULES[name].languages:
                print(f"  {name:28s} hits {st['hits'][name]:5d}  files {st['hit_files'][name]:5d}")
                for s in st["samples"][name]:
                    print(f"      {s}")


if __name__ == "__main__":
    main()
