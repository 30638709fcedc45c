"""Each curation step on small inputs: licence, ranking, clean/generated, heuristics, MinHash,
dedup, PII, commented-out code, syntax, static analysis, decontamination."""

import json
import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from lightcoder.data import analysis
from lightcoder.data.comments import find_code_blocks, remove_commented_code
from lightcoder.data.config import PYTHON_RULES, CommentsConfig, DecontamConfig, LicenseConfig, RankingConfig
from lightcoder.data.decontam import Decontaminator
from lightcoder.data.dedup import cluster, normalized_sha256
from lightcoder.data.filters import check_generated, check_language, check_size, decode_source
from lightcoder.data.license import (detect_license_text, is_copyleft, license_check,
                                     license_of_header, normalize_spdx)
from lightcoder.data.listing import FileRef, Repo
from lightcoder.data.minhash import MinHasher, band_keys, estimated_jaccard, shingle_set
from lightcoder.data.pii import redact
from lightcoder.data.quality import alnum_fraction, check_heuristics, check_syntax
from lightcoder.data.ranking import score_repos, select_repos

JSON_DECODER = Path(json.__file__).parent / "decoder.py"


# ---------------------------------------------------------------- licence and ranking

def test_license_detection():
    assert detect_license_text("Permission is hereby granted, free of charge, to any") == "MIT"
    assert detect_license_text("GNU General Public License version 2 ... designates this "
                               "particular file as subject to the Classpath exception") == \
        "GPL-2.0-with-classpath-exception"
    # MPL-2.0 and EPL-2.0 name GNU licences in their Secondary License clauses
    assert detect_license_text("Mozilla Public License Version 2.0 ... 1.12. \"Secondary License\" means either "
                               "the GNU General Public License, Version 2.0, the GNU Lesser General Public "
                               "License, Version 2.1, the GNU Affero General Public License, Version 3.0") == "MPL-2.0"
    assert detect_license_text("Eclipse Public License - v 2.0 ... \"Secondary License\" means either the GNU "
                               "General Public License, Version 2.0") == "EPL-2.0"
    assert normalize_spdx("GPL-2.0 WITH Linux-syscall-note") == "GPL-2.0"
    assert normalize_spdx("(MIT OR Apache-2.0)") == "MIT"
    assert license_of_header("// SPDX-License-Identifier: LGPL-2.1-or-later\nint x;") == "LGPL-2.1"
    assert license_of_header("x = 1  # no licence here\n") == ""
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    assert detect_license_text(stdlib.read_text()) == "PSF-2.0"
    assert is_copyleft("AGPL-3.0", ["GPL"]) is False and is_copyleft("AGPL-3.0", ["AGPL"])
    assert license_check("", copyleft=["GPL"], unknown="keep") is None
    assert license_check("other", copyleft=["GPL"], unknown="drop")[0] == "license_unknown"


def _repo(name, stars=0, commits=0, tests=0, files=2, license="MIT", size=10):
    r = Repo(name=name, source="/src", kind="dir", license=license, stars=stars, commits=commits,
             files=[FileRef(name, f"{name}/f{i}.py", size + i, f"/x/{name}{i}") for i in range(files)])
    r.test_files = tests
    return r


def test_ranking_drops_the_lowest_tenth_and_keeps_ties():
    repos = [_repo(f"r{i:02d}", stars=i * 10, commits=i, size=100 + i) for i in range(20)]
    kept, dropped = select_repos(repos, license_cfg=LicenseConfig(), ranking=RankingConfig())
    assert [r.name for r, _ in kept][:2] == ["r19", "r18"]  # best first
    assert sorted(r.name for r, *_ in dropped) == ["r00", "r01"]
    assert all(reason == "low_rank" for _, _, reason, _ in dropped)
    flat = [_repo(f"s{i}", size=100 + i) for i in range(10)]  # nothing known: no signal, nothing dropped
    kept, dropped = select_repos(flat, license_cfg=LicenseConfig(), ranking=RankingConfig())
    assert len(kept) == 10 and not dropped and score_repos(flat) == [0.0] * 10


def test_repo_level_license_and_duplicates():
    repos = [_repo("a", stars=10, files=5), _repo("gpl", license="GPL-3.0"),
             _repo("b", files=5), _repo("A", size=99), _repo("unk", license=""),
             _repo("small", files=2)]  # same listing as "a" but too small to call a copy
    kept, dropped = select_repos(repos, license_cfg=LicenseConfig(unknown="drop"),
                                 ranking=RankingConfig(drop_fraction=0))
    reasons = {r.name: reason for r, _, reason, _ in dropped}
    assert reasons == {"gpl": "copyleft", "b": "duplicate_repo", "A": "duplicate_repo",
                       "unk": "license_unknown"}
    assert [r.name for r, _ in kept] == ["a", "small"]


# ---------------------------------------------------------------- clean, generated, heuristics

def test_clean_checks():
    assert check_language("a/b.txt", frozenset({"Python"}))[0] == "language"
    assert check_language("a/b.py", frozenset({"Python"})) is None
    assert check_language("a/b.h", frozenset({"C++"})) is None  # may be C++: clean decides
    assert check_language("a/b.h", frozenset({"Python"})) == (
        "language", "C is not in the allowed languages")
    assert check_size(0, 10) == ("empty", "0 bytes") and check_size(11, 10)[0] == "oversized"
    assert decode_source(b"\xef\xbb\xbfx = 1\n") == ("x = 1\n", None)
    assert decode_source(b"x\0")[1][0] == "binary"
    assert decode_source(b"caf\xe9")[1][0] == "undecodable"
    for codec in ("utf-16", "utf-16-be"):  # with a BOM (utf-16 writes one; big-endian gets it by hand)
        data = ("\ufeff" if codec.endswith("be") else "").encode(codec) + "s = 'café'\n".encode(codec)
        assert decode_source(data) == ("s = 'café'\n", None)
    assert decode_source("x = 1\n".encode("utf-16-le"))[1][0] == "binary"  # no BOM: NUL bytes, not guessed
    assert decode_source(b"\xff\xfe" + b"\x00\xd8")[1][0] == "undecodable"  # a lone surrogate


def test_generated_minified_lock_vendored():
    assert check_generated("p/x_pb2.py", "# Generated by the protocol buffer compiler.\n")[0] == \
        "generated"
    assert check_generated("p/a.go", "// Code generated by stringer; DO NOT EDIT.\n")[0] == \
        "generated"
    assert check_generated("p/app.min.js", "var a=1;")[0] == "minified"
    assert check_generated("p/app.js", "var a=1;" * 200)[0] == "minified"
    assert check_generated("p/vendor/lib/x.go", "package x\n")[0] == "vendored"
    assert check_generated("p/yarn.lock", "")[0] == "lock_file"
    assert check_generated("p/mod.py", JSON_DECODER.read_text()) is None


def test_header_language_from_content():
    from lightcoder.data.filters import refine_language

    assert refine_language("a/x.h", "C", "namespace llvm {\nclass A;\n}\n") == "C++"
    assert refine_language("a/x.h", "C", "template <typename T>\nT f(T);\n") == "C++"
    assert refine_language("a/x.h", "C", "struct s { int a; };\nint f(void);\n") == "C"
    assert refine_language("a/x.c", "C", "int std::x;") == "C"


def test_heuristics_and_alnum_fraction():
    assert check_heuristics("x" * 2000)[0] == "max_line_length"
    assert check_heuristics(("y" * 150 + "\n") * 5)[0] == "avg_line_length"
    assert check_heuristics("{}[]();;\n" * 20)[0] == "alphanumeric"
    assert check_heuristics(JSON_DECODER.read_text()) is None
    rng = random.Random(0)
    alphabet = "ab1_ ;é中\n\t()" + "\u00e0"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        assert alnum_fraction(text) == pytest.approx(sum(map(str.isalnum, text)) / len(text))


# ---------------------------------------------------------------- MinHash and dedup

def test_minhash_estimates_jaccard_without_bias():
    text = JSON_DECODER.read_text()
    lines = text.splitlines(keepends=True)
    hasher = MinHasher()
    errors = []
    for seed in range(30):
        rng = random.Random(seed)
        edited = "".join(l for l in lines if rng.random() > 0.1 * (seed % 5))
        a, b = shingle_set(text), shingle_set(edited)
        exact = len(a & b) / len(a | b)
        errors.append(estimated_jaccard(hasher.signature(text), hasher.signature(edited)) - exact)
    assert abs(np.mean(errors)) < 0.02 and np.mean(np.abs(errors)) < 0.05
    assert MinHasher().signature(text).tolist() == hasher.signature(text).tolist()  # stable
    keys = band_keys(np.stack([hasher.signature(text), hasher.signature(text + " x")]))
    assert keys.shape == (2, 25) and (keys[0] == keys[1]).sum() >= 20


def test_a_shared_licence_header_does_not_make_near_duplicates():
    from lightcoder.data.minhash import strip_leading_comments

    header = "/*\n" + "".join(f" * licence line {i} with some words in it\n" for i in range(25)) + " */\n"
    a = header + "package p;\ninterface A { int SIZE = 16; }\n"
    b = header + "package p;\nclass Other { void run() { go(); } }\n"
    hasher = MinHasher()
    assert estimated_jaccard(hasher.signature(a), hasher.signature(b)) > 0.7  # raw text
    assert estimated_jaccard(hasher.signature(strip_leading_comments(a)),
                             hasher.signature(strip_leading_comments(b))) < 0.3
    assert strip_leading_comments("#!/bin/py\n# c\nx = 1  # y\n") == "\nx = 1  # y\n"


def test_cluster_keeps_the_best_ranked_copy_whatever_the_input_order():
    base = JSON_DECODER.read_text()
    rng = random.Random(1)
    texts = [base, base.replace("def ", "def  ", 2), base + "\n# tail\n", "x = 1\n" * 50,
             "def other(y):\n    return y + 1\n" * 30, base.replace("\n", "\r\n")]
    hasher = MinHasher()
    sigs = np.stack([hasher.signature(t) for t in texts])
    shas = [normalized_sha256(t) for t in texts]
    priority = np.array([3, 0, 4, 1, 2, 5])  # doc 1 is the best-ranked copy of the decoder
    dropped = cluster(priority, shas, sigs, threshold=0.7)
    assert {d: (r, k) for d, (r, k, _) in dropped.items()} == {  # 0, 5: whitespace-only edits
        0: ("duplicate", 1), 2: ("near_duplicate", 1), 5: ("duplicate", 1)}
    for _ in range(5):  # permuting the docs permutes the answer, nothing else
        perm = list(range(len(texts)))
        rng.shuffle(perm)
        again = cluster(priority[perm], [shas[p] for p in perm], sigs[perm], threshold=0.7)
        assert {perm[d]: perm[k] for d, (_, k, _) in again.items()} == {
            d: k for d, (_, k, _) in dropped.items()}


# ---------------------------------------------------------------- PII

def test_pii_redaction_counts_per_kind():
    text = ('author = "Bob <bob@corp.io>"  # see x@example.com\n'
            'HOST = "8.8.4.4"; LOCAL = "127.0.0.1"; VERSION = "1.2.3.4.5"\n'
            'password = "hunter2-sesame"\n'
            'aws = "AKIAIOSFODNN7EXAMPLE"\n'
            'url = "https://admin:s3cr3tpass@db.internal.net/x"\n')
    out, counts = redact(text)
    assert counts == {"email": 1, "ip_address": 1, "password": 2, "key": 1}
    for secret in ("bob@corp.io", "8.8.4.4", "hunter2-sesame", "AKIAIOSFODNN7EXAMPLE",
                   "s3cr3tpass"):
        assert secret not in out
    for kept in ("x@example.com", "127.0.0.1", "1.2.3.4.5", "<EMAIL>", "<IP_ADDRESS>",
                 "<PASSWORD>", "<KEY>"):
        assert kept in out
    assert redact(JSON_DECODER.read_text()) == (JSON_DECODER.read_text(), {})


# ---------------------------------------------------------------- commented-out code

def test_commented_out_code_is_found_and_deleted_by_seed():
    code = "x = 1\n# a = f(b)\n# c = g(a)\n# if c:\n#     print(c)\n# d = [c]\ny = 2\n"
    prose = "x = 1\n# This module reads\n# the settings file and\n# returns a dict of\n" \
            "# the values it found\n# in the file.\ny = 2\n"
    assert len(find_code_blocks(code, "Python", min_lines=5, min_code_share=0.6)) == 1
    assert find_code_blocks(prose, "Python", min_lines=5, min_code_share=0.6) == []
    java = "int x;\n" + "".join(f"// int v{i} = f({i});\n" for i in range(6)) + "int y;\n"
    assert len(find_code_blocks(java, "Java", min_lines=5, min_code_share=0.6)) == 1
    always = CommentsConfig(probability=1.0)
    assert remove_commented_code(code, "Python", "p.py", cfg=always, seed=0) == (
        "x = 1\ny = 2\n", 1, 1)
    half = CommentsConfig(probability=0.5)
    outcomes = {remove_commented_code(code, "Python", f"f{i}.py", cfg=half, seed=0)[2]
                for i in range(40)}
    assert outcomes == {0, 1}
    assert remove_commented_code(code, "Python", "f3.py", cfg=half, seed=0) == \
        remove_commented_code(code, "Python", "f3.py", cfg=half, seed=0)


# ---------------------------------------------------------------- syntax and static analysis

@pytest.mark.parametrize("language, good, bad", [
    ("Python", "def f(x):\n    return x\n", "def f(:\n"),
    ("Java", "class A { int f() { return 1; } }", "class A { int f( { }"),
    ("JavaScript", "function f(x) { return x; }", "function f(x { return x; }"),
    ("TypeScript", "function f(x: number): number { return x; }", "function f(x: ) {"),
    ("C", "int f(int x) { return x; }", "int f(int x { return x; }"),
    ("C++", "template <class T> T f(T x) { return x; }", "template <class T T f(T x) {"),
    ("Go", "package a\nfunc f(x int) int { return x }\n", "package a\nfunc f(x int { }\n"),
    ("Rust", "fn f(x: i32) -> i32 { x }", "fn f(x: i32 -> i32 { x }"),
])
def test_syntax_for_every_shipped_grammar(language, good, bad):
    assert check_syntax(good, language) is None
    assert check_syntax(bad, language)[0] == "syntax_error"


def test_c_error_ratio_tolerates_a_macro_but_not_garbage():
    header = "".join(f"int f{i}(int x) {{ return x + {i}; }}\n" for i in range(200))
    macro_heavy = header + "DECLARE_THING(a, b) c d e;\n"
    assert check_syntax(macro_heavy, "C") is not None  # all-or-nothing rejects it
    assert check_syntax(macro_heavy, "C", max_error_ratio=0.02) is None
    assert check_syntax("int f( {{{ ]] ;;; x y z\n" * 5, "C", max_error_ratio=0.02) is not None


def test_static_analysis_rules_are_named_and_counted():
    java = 'class A { int x; boolean f(String s) { x = x; return s == "a"; } }'
    assert analysis.ts_rule_hits(java, "Java") == {"self-assignment": 1,
                                                   "string-reference-equality": 1}
    assert analysis.ts_rule_hits("if (v === NaN) { a = b; }", "JavaScript") == {
        "compare-with-nan": 1}
    assert analysis.ts_rule_hits("void f() { char b[8]; gets(b); }", "C++") == {
        "dangerous-gets": 1}
    assert analysis.ts_rule_hits("int f(int a) { int b; b = a; return b; }", "C") == {}
    if analysis.ruff_path() is None:
        pytest.skip("ruff is not installed")
    hits = analysis.ruff_hits({"init": "class A:\n    def __init__(self):\n        return 1\n",
                               "ok": "x = 1\n", "is": "x = 'a'\nprint(x is 'a')\n"},
                              list(PYTHON_RULES))
    assert hits == {"init": {"PLE0101": 1}, "is": {"F632": 1}}


# ---------------------------------------------------------------- decontamination

def test_decontamination_catches_a_pasted_benchmark_solution(tmp_path):
    bench = tmp_path / "bench.jsonl"
    solution = ("def longest_common_prefix(words):\n    if not words:\n        return ''\n"
                "    prefix = words[0]\n    for w in words[1:]:\n        while not "
                "w.startswith(prefix):\n            prefix = prefix[:-1]\n    return prefix\n")
    bench.write_text(json.dumps({"task_id": "T/1", "canonical_solution": solution}) + "\n")
    d = Decontaminator(DecontamConfig(humaneval=False, benchmarks=[str(bench)]))
    reason, detail = d.check("import os\n\n" + solution.replace("    ", "\t") + "\nx = 1\n")
    assert reason == "contaminated" and "bench.jsonl:T/1" in detail
    assert d.check(JSON_DECODER.read_text()) is None
    assert d.check("def longest_common_prefix(words):\n    return ''\n") is None
    with pytest.raises(ValueError, match="does not exist"):
        Decontaminator(DecontamConfig(benchmarks=[str(tmp_path / "missing.jsonl")]))


def test_decontamination_uses_humaneval_and_warns_when_it_is_missing(tmp_path, monkeypatch,
                                                                      capsys):
    from lightcoder.data import decontam

    solution = ("    return sorted(set(x for x in numbers if x % 2 == 0 and x > 0 and x < 100\n"
                "                      and x != 42 or x == 7))\n")
    he = tmp_path / "HumanEval.jsonl"
    he.write_text(json.dumps({"task_id": "HumanEval/7", "canonical_solution": solution}) + "\n")
    monkeypatch.setattr(decontam, "humaneval_path", lambda: he)
    found = Decontaminator(DecontamConfig())
    assert found.sources == [str(he)]
    assert found.check("def f(numbers):\n" + solution)[0] == "contaminated"

    def missing():
        raise FileNotFoundError("HumanEval data not found (looked at /nowhere)")

    monkeypatch.setattr(decontam, "humaneval_path", missing)
    alone = Decontaminator(DecontamConfig())
    assert alone.sources == [] and alone.check("def f(numbers):\n" + solution) is None
    assert "decontamination runs without HumanEval" in capsys.readouterr().err
