"""SourceFile <-> Parquet round trip."""

import pyarrow.parquet as pq

from lightcoder.data.records import (
    PARQUET_SCHEMA,
    SourceFile,
    from_row,
    iter_parquet,
    to_row,
    write_parquet,
)


def _files() -> list[SourceFile]:
    return [
        SourceFile(repo="json", path="json/decoder.py", language="Python",
                   content="def f():\n    return 'é ☺ \\u2028'\n", license="PSF-2.0", stars=3,
                   split="train", sha256="ab" * 32, meta={"size": 30, "lines": 2}),
        SourceFile(repo="x", path="x.py", language="Python", content="x = 1\n"),  # defaults
    ]


def test_row_round_trip():
    for f in _files():
        row = to_row(f)
        assert isinstance(row["meta"], str)
        assert from_row(row) == f


def test_parquet_round_trip(tmp_path):
    files = _files()
    path = tmp_path / "train-00000.parquet"
    assert write_parquet(files, path) == 2
    assert pq.read_schema(path).equals(PARQUET_SCHEMA)
    assert list(iter_parquet(path, batch_size=1)) == files


def test_meta_default_is_not_shared():
    a = SourceFile(repo="a", path="a.py", language="Python", content="")
    a.meta["k"] = 1
    assert SourceFile(repo="b", path="b.py", language="Python", content="").meta == {}
