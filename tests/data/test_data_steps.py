"""The corpus steps one by one: scan, clean, dedup, quality (pure checks and generators)."""

import os
import sysconfig
from pathlib import Path

import pytest

from lightcoder.data.dedup import dedup_exact, normalized_sha256
from lightcoder.data.filters import check_language, check_size, clean_files, decode_source
from lightcoder.data.quality import check_heuristics, check_syntax, quality_files
from lightcoder.data.records import SourceFile
from lightcoder.data.sources import (
    ScanStats,
    default_sources,
    detect_license,
    resolve_roots,
    scan_sources,
)

PY = frozenset({"Python"})


def test_check_language():
    assert check_language("a/b.py", PY) is None
    assert check_language("a/b.pyi", PY) is None
    assert check_language("a/notes.txt", PY)[0] == "language"
    assert check_language("a/Makefile", PY) == ("language", "no extension")
    assert check_language("a/b.java", PY) == ("language", "Java is not in the allowed languages")


def test_check_size():
    assert check_size(0, 10) == ("empty", "0 bytes")
    assert check_size(11, 10)[0] == "oversized"
    assert check_size(10, 10) is None


def test_decode_source():
    assert decode_source(b"x = 1\n") == ("x = 1\n", None)
    assert decode_source(b"\xef\xbb\xbfx = 1\n") == ("x = 1\n", None)  # BOM dropped
    assert decode_source(b"x\0y")[1] == ("binary", "NUL byte at offset 1")
    assert decode_source(b"x = '\xe9'\n")[1][0] == "undecodable"
    assert decode_source(b" \n\t\n")[1] == ("empty", "whitespace only")


def test_normalized_sha256_ignores_whitespace_only():
    assert normalized_sha256("a  =\r\n1\n") == normalized_sha256("a =\n1")
    assert normalized_sha256("a = 1") != normalized_sha256("a = 2")


def _sf(path: str, content: str) -> SourceFile:
    return SourceFile(repo=path.split("/")[0], path=path, language="Python", content=content,
                      meta={"size": len(content)})


def test_dedup_keeps_first_and_reports_rest():
    drops = []
    files = [_sf("a/x.py", "x = 1\n"), _sf("b/x.py", "x  =  1"), _sf("c/y.py", "y = 2\n")]
    kept = list(dedup_exact(files, on_drop=drops.append))
    assert [f.path for f in kept] == ["a/x.py", "c/y.py"]
    assert all(f.sha256 == normalized_sha256(f.content) for f in kept)
    assert [(d.path, d.reason, d.detail) for d in drops] == [
        ("b/x.py", "duplicate", "same content as a/x.py")]


def test_check_syntax():
    assert check_syntax("def f(x):\n    return x\n", "Python") is None
    reason, detail = check_syntax("def f(:\n    pass\n", "Python")
    assert reason == "syntax_error" and detail.startswith("line 1:")
    reason, detail = check_syntax("x = 1\n\n\nif x\n    pass\n", "Python")
    assert reason == "syntax_error" and detail.startswith("line 4:")
    assert check_syntax("anything {{{", "Kotlin") is None  # no grammar: unchecked


def test_check_heuristics():
    code = "def f(x):\n    return x + 1\n"
    assert check_heuristics(code) is None
    assert check_heuristics("x = '" + "a" * 1200 + "'\n")[0] == "max_line_length"
    assert check_heuristics(("y = '" + "b" * 150 + "'\n") * 5)[0] == "avg_line_length"
    assert check_heuristics("#" * 50 + "\n" + "-+" * 40 + "\n")[0] == "alphanumeric"
    assert check_heuristics("#" * 50 + "\n", min_alnum_fraction=0) is None  # 0 disables


def test_quality_files_reasons():
    drops = []
    files = [_sf("a/ok.py", "x = 1\n"), _sf("a/bad.py", "def (:\n"),
             _sf("a/long.py", "x = '" + "a" * 1200 + "'\n")]
    kept = list(quality_files(files, syntax_check=True, heuristics={}, on_drop=drops.append))
    assert [f.path for f in kept] == ["a/ok.py"]
    assert [(d.path, d.reason) for d in drops] == [("a/bad.py", "syntax_error"),
                                                   ("a/long.py", "max_line_length")]
    kept = list(quality_files(files, syntax_check=False, heuristics=None, on_drop=drops.append))
    assert len(kept) == 3


def test_scan_repos_exclusions_and_symlinks(tmp_path):
    root = tmp_path / "lib"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "m.py").write_text("m = 1\n")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0\1")
    (root / "site-packages" / "numpy").mkdir(parents=True)
    (root / "site-packages" / "numpy" / "x.py").write_text("x = 1\n")
    (root / "mod.py").write_text("y = 2\n")
    (root / "stray.pyc").write_bytes(b"\0")
    outside = tmp_path / "outside.py"
    outside.write_text("secret = 1\n")
    os.symlink(outside, root / "pkg" / "leak.py")
    os.symlink(root / "pkg" / "sub" / "m.py", root / "pkg" / "alias.py")  # stays inside: kept
    os.symlink(tmp_path, root / "pkg" / "loop")  # dir symlink: never followed

    stats = ScanStats()
    found = scan_sources([root], exclude_dirs=["__pycache__", "site-packages"],
                         exclude_suffixes=[".pyc"], stats=stats)
    assert [(f.repo, f.path) for f in found] == [
        ("mod", "mod.py"), ("pkg", "pkg/__init__.py"), ("pkg", "pkg/alias.py"),
        ("pkg", "pkg/sub/m.py")]
    assert stats.excluded_dirs == 2 and stats.excluded_files == 1
    assert stats.skipped_symlinks == 2 and stats.repos == 2


def test_scan_multiple_roots_prefixes_names(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name / "pkg").mkdir(parents=True)
        (tmp_path / name / "pkg" / "a.py").write_text(f"{name} = 1\n")
    found = scan_sources(resolve_roots([str(tmp_path / "one"), str(tmp_path / "two")]),
                         exclude_dirs=[], exclude_suffixes=[], stats=ScanStats())
    assert [(f.repo, f.path) for f in found] == [("one/pkg", "one/pkg/a.py"),
                                                 ("two/pkg", "two/pkg/a.py")]


def test_resolve_roots_errors(tmp_path):
    with pytest.raises(ValueError, match=r"corpus path .*nope does not exist: pass --corpus DIR"):
        resolve_roots([str(tmp_path / "nope")])
    (tmp_path / "f.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        resolve_roots([str(tmp_path / "f.py")])
    (tmp_path / "a" / "lib").mkdir(parents=True)
    (tmp_path / "b" / "lib").mkdir(parents=True)
    with pytest.raises(ValueError, match="share a directory name"):
        resolve_roots([str(tmp_path / "a" / "lib"), str(tmp_path / "b" / "lib")])


def test_default_source_is_stdlib_with_psf_license():
    assert default_sources() == [sysconfig.get_paths()["stdlib"]]
    assert resolve_roots([]) == [Path(sysconfig.get_paths()["stdlib"]).resolve()]
    assert detect_license(Path(sysconfig.get_paths()["stdlib"])) == "PSF-2.0"


def test_detect_license(tmp_path):
    assert detect_license(tmp_path) == ""
    (tmp_path / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of "
                                      "charge, to any person obtaining a copy\n")
    assert detect_license(tmp_path) == "MIT"
    (tmp_path / "LICENSE").write_text("All rights reserved.\n")
    assert detect_license(tmp_path) == "other"


def test_clean_files_reads_and_sets_meta(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.py").write_text("x = 1\ny = 2")
    found = scan_sources([tmp_path], exclude_dirs=[], exclude_suffixes=[], stats=ScanStats())
    [f] = list(clean_files(found, languages=PY, max_file_bytes=100, on_drop=lambda r: None))
    assert (f.repo, f.path, f.language, f.meta) == ("r", "r/a.py", "Python",
                                                    {"size": 11, "lines": 2})
