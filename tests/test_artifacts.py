"""artifacts.py: atomic writes, DONE markers, torn-tail JSONL, directory swaps."""

import json
import os

import pytest

from lightcoder.artifacts import (
    DONE_FILE, AtomicFile, append_jsonl, clear_done, is_done, iter_jsonl, mark_done, read_done, read_jsonl,
    replace_dir, trim_torn_tail, write_bytes_atomic, write_json_atomic, write_text_atomic,
)


def test_atomic_writes_leave_only_the_target(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "héllo\n")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_json_atomic(tmp_path / "sub" / "c.json", {"b": 1, "a": [1, 2]})  # creates the parent
    write_json_atomic(tmp_path / "d.json", {"b": 1, "a": 2}, sort_keys=False)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "c.json").read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"
    assert list(json.loads((tmp_path / "d.json").read_text())) == ["b", "a"]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "d.json", "sub"]
    assert os.listdir(tmp_path / "sub") == ["c.json"]


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_exception_mid_write_keeps_the_old_content(tmp_path):
    path = tmp_path / "tasks.jsonl"
    write_text_atomic(path, "old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicFile(path, "w") as f:
            f.write("new, partial")
            raise RuntimeError("boom")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["tasks.jsonl"]

    def rows():
        yield {"a": 1}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(path, "w") as f:
            for row in rows():
                f.write(json.dumps(row) + "\n")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["tasks.jsonl"]


def test_done_markers_round_trip(tmp_path):
    stage = tmp_path / "stage"
    assert not is_done(stage) and read_done(stage) is None
    clear_done(stage)  # nothing to clear: no error
    summary = {"splits": {"valid": 1, "train": 2}, "seconds": 0.5}
    mark_done(stage, summary)
    assert is_done(stage) and read_done(stage) == summary
    assert list(read_done(stage)["splits"]) == ["valid", "train"]  # order kept
    assert os.listdir(stage) == [DONE_FILE]
    clear_done(stage)
    assert not is_done(stage) and read_done(stage) is None
    (stage / DONE_FILE).write_text("{half")
    with pytest.raises(ValueError, match="DONE is not a valid completion marker"):
        read_done(stage)


def test_torn_jsonl_tail_is_ignored(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert [n for n, _ in iter_jsonl(path)] == [1, 3]
    path.write_bytes('{"step": 1}\n{"text": "é'.encode()[:-1])  # cut inside a UTF-8 character
    assert read_jsonl(path) == [{"step": 1}]
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not valid JSON"):
        read_jsonl(path, tolerate_torn_tail=False)
    path.write_text('{"step": 1}\n{"step": 2, "lo\n')  # has its newline: written whole, so corrupt
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"step": 1}\n{"text": "a\u2028b"}\n')  # U+2028 inside a string is not a line break
    assert read_jsonl(path) == [{"step": 1}, {"text": "a\u2028b"}]


def test_bad_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match=r"samples.jsonl:2: not valid JSON .*; rerun it"):
        read_jsonl(path, hint="rerun it")
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"samples.jsonl:2: not a JSON object"):
        read_jsonl(path)
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")


def test_append_and_trim_torn_tail(tmp_path):
    path = tmp_path / "samples.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a", encoding="utf-8") as f:
        append_jsonl(f, {"a": 2})
        f.write('{"a": 3, "b')  # killed mid-write
    assert trim_torn_tail(path) and path.read_text() == '{"a": 1}\n{"a": 2}\n'
    assert not trim_torn_tail(path)  # already on a line boundary
    with open(path, "a") as f:
        f.write('{"a": 3}')  # a complete row whose newline was lost: kept, newline added
    assert trim_torn_tail(path) and read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    append_jsonl(path, {"a": 4})
    assert [r["a"] for r in read_jsonl(path)] == [1, 2, 3, 4]
    assert not trim_torn_tail(tmp_path / "missing.jsonl")


def test_replace_dir_swaps_and_cleans_stale_siblings(tmp_path):
    final = tmp_path / "data"
    first = tmp_path / ".data.tmp-1"
    first.mkdir()
    (first / "x.txt").write_text("one")
    assert replace_dir(first, final) == final
    assert (final / "x.txt").read_text() == "one" and not first.exists()

    stale = tmp_path / ".shards.old-99999"  # left by a swap that crashed
    stale.mkdir()
    (stale / "junk").write_text("x")
    keep = tmp_path / ".hidden-but-not-ours"
    keep.mkdir()
    second = tmp_path / ".data.tmp-2"
    (second / "sub").mkdir(parents=True)
    (second / "sub" / "y.txt").write_text("two")
    replace_dir(second, final)
    assert (final / "sub" / "y.txt").read_text() == "two" and not (final / "x.txt").exists()
    assert sorted(os.listdir(tmp_path)) == [".hidden-but-not-ours", "data"]


def test_replace_dir_failure_restores_the_old_dir(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(OSError):
        replace_dir(tmp_path / "does-not-exist", final)
    assert (final / "old.txt").read_text() == "old"
