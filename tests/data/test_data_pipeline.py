"""The corpus stage end to end on a small real corpus: funnel reasons, splits, DONE, errors."""

import json
import os
import shutil
from pathlib import Path

import pytest

from lightcoder.data import pipeline
from lightcoder.data.pipeline import DataConfig, assign_splits, read_corpus, run_data
from lightcoder.data.report import format_funnel

JSON_DIR = Path(json.__file__).parent
MAX_BYTES = 20_000  # json/decoder.py (~12 KB) fits, big.py does not

# path -> (reason, stage) for every crafted bad file in _make_corpus
EXPECTED_DROPS = {
    "bad/binary.py": ("binary", "clean"),
    "bad/latin1.py": ("undecodable", "clean"),
    "bad/empty.py": ("empty", "clean"),
    "bad/blank.py": ("empty", "clean"),
    "bad/big.py": ("oversized", "clean"),
    "bad/notes.txt": ("language", "clean"),
    "bad/Helper.java": ("language", "clean"),
    "bad/broken.py": ("syntax_error", "quality"),
    "bad/long.py": ("max_line_length", "quality"),
    "zz_copy/decoder.py": ("duplicate", "dedup"),
    "LICENSE": ("language", "clean"),  # no extension: the licence file is not code
}


def _make_corpus(root: Path) -> Path:
    """json (copied from the stdlib), 8 small module repos, a 'bad' repo, a duplicate repo."""
    shutil.copytree(JSON_DIR, root / "json", ignore=shutil.ignore_patterns("__pycache__"))
    for i in range(8):
        (root / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n")
    bad = root / "bad"
    bad.mkdir()
    (bad / "ok.py").write_text("def ok():\n    return 1\n")
    (bad / "binary.py").write_bytes(b"x = 1\n\0\0\0")
    (bad / "latin1.py").write_bytes("name = 'caf\u00e9'\n".encode("latin-1"))
    (bad / "empty.py").write_bytes(b"")
    (bad / "blank.py").write_text("\n   \n")
    (bad / "big.py").write_text("x = 1\n" * 5000)
    (bad / "notes.txt").write_text("not code\n")
    (bad / "Helper.java").write_text("class Helper {}\n")
    (bad / "broken.py").write_text("def broken(:\n    pass\n")
    (bad / "long.py").write_text("x = '" + "a" * 1500 + "'\n")
    (bad / "__pycache__").mkdir()
    (bad / "__pycache__" / "ok.cpython-311.pyc").write_bytes(b"\0\1\2")
    # Same content as json/decoder.py up to whitespace: the later path is the duplicate.
    (root / "zz_copy").mkdir()
    text = (JSON_DIR / "decoder.py").read_text()
    (root / "zz_copy" / "decoder.py").write_text(text.replace("\n", "  \r\n"))
    (root / "LICENSE").write_text("MIT License\nPermission is hereby granted, free of charge\n")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    corpus = _make_corpus(base / "corpus")
    cfg = DataConfig(sources=[str(corpus)], max_file_bytes=MAX_BYTES, rows_per_shard=4)
    stats = run_data(cfg, base / "out")
    return cfg, base, stats


def test_every_bad_file_is_rejected_with_its_reason(built):
    _, base, stats = built
    rejected = {}
    for p in (base / "out" / "rejected").glob("*.jsonl"):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            assert p.stem == r["reason"]
            rejected[r["path"]] = (r["reason"], r["stage"])
    assert rejected == EXPECTED_DROPS
    assert json.loads((base / "out" / "rejected" / "duplicate.jsonl").read_text())["detail"] == \
        "same content as json/decoder.py"


def test_funnel_counts(built):
    _, _, stats = built
    num_json = len([p for p in JSON_DIR.iterdir() if p.is_file()])
    seen_files = num_json + 8 + 10 + 1 + 1  # json, modN, bad/* (no .pyc), zz_copy, LICENSE
    assert stats["seen"]["files"] == seen_files
    by_reason = {r: c["files"] for s in stats["stages"] for r, c in s["dropped"].items()}
    assert by_reason == {"binary": 1, "undecodable": 1, "empty": 2, "oversized": 1,
                         "language": 3, "duplicate": 1, "syntax_error": 1, "max_line_length": 1}
    assert stats["kept"]["files"] == num_json + 8 + 1
    assert stats["stages"][-1]["kept"] == {k: stats["kept"][k] for k in ("files", "bytes")}
    dropped_bytes = sum(c["bytes"] for s in stats["stages"] for c in s["dropped"].values())
    assert stats["seen"]["bytes"] - dropped_bytes == stats["kept"]["bytes"]
    assert sum(s["files"] for s in stats["splits"].values()) == stats["kept"]["files"]
    assert stats["scan"]["excluded_dirs"] == 1  # bad/__pycache__
    assert stats["rejected"]["capped"] == {}


def test_split_is_by_repo_and_covers_all(built):
    _, base, stats = built
    out = base / "out"
    split_of_repo = {}
    for split in ("train", "valid", "test"):
        files = list(read_corpus(out, split))
        assert files, f"{split} is empty"
        for f in files:
            assert f.split == split
            assert split_of_repo.setdefault(f.repo, split) == split
            assert f.path.startswith(f.repo)
        assert [f.path for f in files] == sorted(f.path for f in files)
        assert stats["splits"][split]["files"] == len(files)
    assert len(split_of_repo) == stats["kept"]["repos"] == 10  # json, mod0-7, bad


def test_records_carry_license_meta_and_hash(built):
    _, base, _ = built
    files = [f for s in ("train", "valid", "test") for f in read_corpus(base / "out", s)]
    dec = next(f for f in files if f.path == "json/decoder.py")
    assert dec.content == (JSON_DIR / "decoder.py").read_text()
    assert dec.license == "MIT" and dec.stars == 0 and dec.language == "Python"
    assert dec.meta["size"] == (JSON_DIR / "decoder.py").stat().st_size
    assert len(dec.sha256) == 64
    assert len({f.sha256 for f in files}) == len(files)


def test_rerun_skips_then_force_rebuilds(built):
    cfg, base, stats = built
    out = base / "out"
    done_before = (out / "DONE").stat().st_mtime_ns
    again = run_data(cfg, out)
    assert again["skipped"] is True and again["kept"] == stats["kept"]
    assert (out / "DONE").stat().st_mtime_ns == done_before
    forced = run_data(cfg, out, force=True)
    assert forced["skipped"] is False
    assert forced["splits"] == stats["splits"]  # deterministic
    assert not [p for p in base.iterdir() if p.name.startswith(".out.")]  # no tmp/old left


def test_same_seed_same_split_other_seed_still_by_repo(built, tmp_path):
    cfg, base, stats = built
    corpus = cfg.sources[0]
    s2 = run_data(DataConfig(sources=[corpus], max_file_bytes=MAX_BYTES), tmp_path / "a")
    assert s2["splits"] == stats["splits"]
    assert [f.path for f in read_corpus(tmp_path / "a", "test")] == \
        [f.path for f in read_corpus(base / "out", "test")]
    s3 = run_data(DataConfig(sources=[corpus], max_file_bytes=MAX_BYTES, seed=7), tmp_path / "b")
    assert all(s3["splits"][s]["repos"] >= 1 for s in ("train", "valid", "test"))


def test_assign_splits():
    sizes = {f"r{i}": 100 for i in range(40)}
    a = assign_splits(sizes, valid_fraction=0.1, test_fraction=0.1, seed=0)
    assert a == assign_splits(dict(reversed(sizes.items())), valid_fraction=0.1,
                              test_fraction=0.1, seed=0)
    assert list(a.values()).count("test") == 4 and list(a.values()).count("valid") == 4
    three = assign_splits({"a": 1, "b": 1, "c": 1}, valid_fraction=0.05, test_fraction=0.05, seed=0)
    assert sorted(three.values()) == ["test", "train", "valid"]
    assert assign_splits({"a": 5}, valid_fraction=0.5, test_fraction=0.4, seed=3) == {"a": "train"}
    # A repo bigger than the test/valid byte budget stays in train, whatever its hash.
    giant = {"giant": 10_000, **{f"s{i}": 10 for i in range(50)}}
    for seed in range(20):
        assert assign_splits(giant, valid_fraction=0.05, test_fraction=0.05, seed=seed)[
            "giant"] == "train"


def test_format_funnel(built):
    _, _, stats = built
    md = format_funnel(stats)
    for word in ("| seen |", "| clean | language | 3 |", "| dedup | duplicate | 1 |",
                 "| quality | syntax_error | 1 |", "**kept**", "| train |", "| valid |",
                 "| test |"):
        assert word in md, word


def test_missing_and_file_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist: pass --corpus DIR"):
        run_data(DataConfig(sources=[str(tmp_path / "missing")]), tmp_path / "out")
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="is a file"):
        run_data(DataConfig(sources=[str(tmp_path / "a.py")]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_no_usable_files(tmp_path):
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("hello\n")
    (src / "e.py").write_text("")
    with pytest.raises(ValueError, match=r"no usable source files in .*src: 2 files seen, "
                                         r"dropped: \{'language': 1, 'empty': 1\}"):
        run_data(DataConfig(sources=[str(src)]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_crash_leaves_no_done(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        run_data(DataConfig(sources=[str(src)]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path) == ["src"]


def test_read_corpus_errors(tmp_path):
    with pytest.raises(ValueError, match=r"corpus stage not finished in .*: run `lightcoder data`"):
        list(read_corpus(tmp_path, "train"))
    (tmp_path / "DONE").write_text("{}")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        list(read_corpus(tmp_path, "dev"))


def test_refuses_to_replace_foreign_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match="not corpus outputs"):
        run_data(DataConfig(sources=[str(src)]), out)
    assert (out / "notes.md").exists()


@pytest.mark.parametrize("kwargs, field", [
    ({"languages": []}, "data.languages"),
    ({"languages": ["Klingon"]}, "data.languages"),
    ({"max_file_bytes": 0}, "data.max_file_bytes"),
    ({"valid_fraction": 0.6, "test_fraction": 0.5}, "data.valid_fraction"),
    ({"test_fraction": -0.1}, "data.test_fraction"),
    ({"sources": "Lib"}, "data.sources"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DataConfig(**kwargs)


def test_rejected_lines_are_capped_per_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    for i in range(3):
        (src / f"doc{i}.txt").write_text(f"doc {i}\n")
    stats = run_data(DataConfig(sources=[str(src)], max_rejected_per_reason=1), tmp_path / "out")
    lines = (tmp_path / "out" / "rejected" / "language.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert stats["rejected"]["capped"] == {"language": 3}
    assert stats["stages"][0]["dropped"]["language"]["files"] == 3
    assert "capped: language (3)" in format_funnel(stats)
