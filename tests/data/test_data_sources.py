"""Sources: directories, git repositories, zip/tar archives, Stack-layout JSONL/Parquet, manifest."""

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lightcoder.data.config import DataConfig, RankingConfig
from lightcoder.data.pipeline import build_plan, run_data
from lightcoder.data.records import read_corpus
from lightcoder.data.sources import (apply_manifest, list_source, read_manifest, source_names)

MIT = "MIT License\n\nPermission is hereby granted, free of charge, to any person\n"


def _list(path: Path, **kw):
    return {r.name: r for r in list_source(path, path.name, multi=False, layout="auto",
                                           exclude_dirs=["__pycache__"],
                                           exclude_suffixes=[".pyc"], **kw)}


def test_zip_and_tar_archives_list_repos_with_licences(tmp_path):
    z = tmp_path / "src.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("LICENSE", MIT)
        zf.writestr("java.base/java/lang/A.java", "class A {}\n")
        zf.writestr("java.base/java/lang/ATest.java", "class ATest {}\n")
        zf.writestr("java.sql/java/sql/B.java", "class B {}\n")
        zf.writestr("../evil.py", "x = 1\n")
    repos = _list(z)
    assert set(repos) == {"java.base", "java.sql", "src.zip"}
    assert repos["java.base"].license == "MIT" and repos["java.base"].license_from == "root"
    assert repos["java.base"].test_files == 1 and len(repos["java.base"].files) == 2
    assert [p.reason for p in repos["src.zip"].problems] == ["unsafe_member"]
    t = tmp_path / "proj.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for name, text in [("proj/LICENSE", "Apache License\nVersion 2.0, January 2004\n"),
                           ("proj/a.py", "x = 1\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    repos = _list(t)
    assert set(repos) == {"proj"} and repos["proj"].license == "Apache-2.0"
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(t.read_bytes()[:40])
    assert [p.reason for r in _list(truncated).values() for p in r.problems] == ["broken_archive"]


def test_archives_run_through_the_pipeline(tmp_path):
    z = tmp_path / "src.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(3):
            zf.writestr(f"mod{i}/Main.java", f"class Main{i} {{ int f() {{ return {i}; }} }}\n")
    stats = run_data(DataConfig(sources=[str(z)], languages=["Java"], workers=1,
                                valid_fraction=0.0, test_fraction=0.0), tmp_path / "out")
    files = [f for s in ("train", "valid", "test") for f in read_corpus(tmp_path / "out", s)]
    assert stats["kept"]["files"] == 3 and {f.repo for f in files} == {"mod0", "mod1", "mod2"}
    assert all(f.content.startswith("class Main") and f.language == "Java" for f in files)


def _stack_rows():
    rows = []
    for r in range(4):
        for f in range(3):
            rows.append({"content": f"def f{r}_{f}(x):\n    return x + {r * 10 + f}\n",
                         "path": f"pkg/m{f}.py", "repo_name": f"owner/repo{r}",
                         "license": ["MIT"] if r != 3 else ["GPL-3.0"], "stars": r * 5})
    return rows


def test_stack_jsonl_and_parquet(tmp_path):
    rows = _stack_rows()
    jl = tmp_path / "stack.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    pqf = tmp_path / "stack.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pqf, row_group_size=5)
    for src in (jl, pqf):
        repos = _list(src)
        assert repos["owner/repo2"].stars == 10 and len(repos["owner/repo2"].files) == 3
        assert repos["owner/repo3"].license == "GPL-3.0"
    assert [p.reason for p in _list(jl)["stack.jsonl"].problems] == ["bad_json"]
    no_ranking = RankingConfig(drop_fraction=0.0)
    stats = run_data(DataConfig(sources=[str(pqf)], workers=1, valid_fraction=0.0,
                                test_fraction=0.0, ranking=no_ranking), tmp_path / "out")
    files = {f.path: f for s in ("train", "valid", "test") for f in read_corpus(tmp_path / "out", s)}
    assert "owner/repo1/pkg/m2.py" in files and files["owner/repo1/pkg/m2.py"].stars == 5
    assert files["owner/repo1/pkg/m2.py"].content == rows[5]["content"]
    assert stats["stages"][1]["dropped"]["copyleft"]["files"] == 3  # owner/repo3
    out2 = run_data(DataConfig(sources=[str(jl)], workers=1, valid_fraction=0.0,
                               test_fraction=0.0, ranking=no_ranking), tmp_path / "out2")
    assert out2["kept"]["files"] == stats["kept"]["files"]


def test_git_repository_reports_commits_and_test_files(tmp_path):
    repo = tmp_path / "proj"
    (repo / "tests").mkdir(parents=True)
    (repo / "LICENSE").write_text(MIT)
    (repo / "a.py").write_text("x = 1\n")
    (repo / "tests" / "test_a.py").write_text("def test():\n    assert True\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(3):
        (repo / "a.py").write_text(f"x = {i}\n")
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-q", "-m", f"c{i}"], check=True)
    repos = _list(repo)
    assert list(repos) == ["proj"]  # a directory with .git is one repository
    r = repos["proj"]
    assert (r.kind, r.commits, r.test_files, r.license) == ("git", 3, 1, "MIT")
    assert not any(".git/" in f.path for f in r.files)


def test_manifest_sets_stars_and_source_names_are_distinct(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"repo": "json", "stars": 42, "commits": 7}\n')
    manifest = read_manifest(str(tmp_path / "m.jsonl"))
    repos = [list_source(Path(json.__file__).parent.parent, "lib", multi=False, layout="children",
                         exclude_dirs=["site-packages", "__pycache__"], exclude_suffixes=[".pyc"])]
    by_name = {r.name: r for r in repos[0]}
    assert apply_manifest(repos[0], manifest) == 1
    assert by_name["json"].stars == 42 and by_name["json"].commits == 7
    assert by_name["json"].license == "PSF-2.0" and by_name["json"].license_from == "root"
    names = source_names([Path("/a/3.11/lib/python3.11/site-packages"),
                          Path("/a/3.12/lib/python3.12/site-packages"), Path("/b/include")])
    assert names == ["python3.11/site-packages", "python3.12/site-packages", "include"]
    (tmp_path / "bad.jsonl").write_text('{"stars": 1}\n')
    with pytest.raises(ValueError, match="no 'repo' key"):
        read_manifest(str(tmp_path / "bad.jsonl"))


def test_plan_covers_every_listed_file(tmp_path):
    root = tmp_path / "c"
    for i in range(5):
        (root / f"p{i}").mkdir(parents=True)
        (root / f"p{i}" / "a.py").write_text(f"x = {i}\n" * (i + 1))
        (root / f"p{i}" / "README").write_text("hi\n")
    plan = build_plan(DataConfig(sources=[str(root)], shard_bytes=10))
    listed = sum(len(s["refs"]) for s in plan["shards"]) + len(plan["drops"])
    assert listed == plan["seen"]["files"] == 10
    assert len(plan["shards"]) == 5  # shards never exceed shard_bytes unless one file does


def test_stack_rows_with_bad_values_or_columns_are_counted_not_fatal(tmp_path):
    """A non-numeric `stars` keeps its row (and every later row); a non-text `content` is a bad row;
    a Parquet file without `content` names the columns it has."""
    rows = _stack_rows()
    rows[1]["stars"] = "many"
    rows[2]["stars"] = float("inf")  # json.dumps writes Infinity, which json.loads reads back
    jl = tmp_path / "stars.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert sum(len(r.files) for r in _list(jl).values()) == len(rows)
    rows[0]["content"] = "x = '\ud800'\n"  # a lone surrogate: valid JSON, not Unicode text
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    listed = _list(surrogate)
    assert sum(len(r.files) for r in listed.values()) == len(rows)  # the rows after it are not lost
    assert not [p for r in listed.values() for p in r.problems]
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "content": i} for i, r in enumerate(_stack_rows())]), numbers)
    assert {p.reason for p in _list(numbers)["numbers.parquet"].problems} == {"bad_row"}
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "x = 1", "filename": "a.py"}]), wrong)
    problem, = _list(wrong)["wrong.parquet"].problems
    assert problem.reason == "broken_archive" and "no `content` column" in problem.detail and "text" in problem.detail


def test_loose_files_sharing_a_stem_are_one_repository(tmp_path):
    """A flat C project: foo.c, foo.h and foo.py are one repository "foo", not three that ranking would
    drop as duplicate repository names."""
    root = tmp_path / "flat"
    root.mkdir()
    for name, text in (("foo.c", "int foo(void) { return 1; }\n"), ("foo.h", "int foo(void);\n"),
                       ("foo.py", "x = 1\n"), ("bar.py", "y = 2\n")):
        (root / name).write_text(text)
    repos = _list(root)
    assert sorted(repos) == ["bar", "foo"]
    assert sorted(f.path for f in repos["foo"].files) == ["foo.c", "foo.h", "foo.py"]
