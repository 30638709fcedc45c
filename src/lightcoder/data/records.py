"""The one record type of the corpus stage, and its Parquet form.

`SourceFile` is what every corpus step reads and yields, and what later stages (tokenizer,
packing, eval builders) read back with `read_corpus` below. On disk a corpus
is Parquet shards with `PARQUET_SCHEMA`: one row per file; `meta` is stored as a JSON string so
the schema stays fixed while meta keys evolve.

A file that a step drops is counted in stats.json and sampled, one JSON line each, into
`rejected/<reason>.jsonl` (lightcoder.data.curation.ShardLog).

Example: from_row(to_row(f)) == f for every SourceFile f with JSON-serialisable meta.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lightcoder.artifacts import is_done
from lightcoder.data.config import SPLITS

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("repo", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("license", pa.string(), nullable=False),
        pa.field("stars", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("meta", pa.string(), nullable=False),  # JSON object
    ]
)


@dataclass
class SourceFile:
    """One source file of the corpus.

    `path` is relative to the corpus root and starts with the repo name ("json/decoder.py" in
    repo "json"). `sha256` is the hex SHA-256 of the whitespace-normalised content (the exact
    dedup key, see `lightcoder.data.dedup`), not of the raw bytes. `meta` holds
    {"size": bytes after PII/comment edits, "lines": n, "rank": the repository's rank (0 =
    best), "repo_score": its ranking score} and "original_size" when an edit changed the size.
    """

    repo: str
    path: str
    language: str
    content: str
    license: str = ""
    stars: int = 0
    split: str = ""
    sha256: str = ""
    meta: dict = field(default_factory=dict)


def to_row(f: SourceFile) -> dict:
    """A Parquet row (plain dict) for a SourceFile; meta becomes a JSON string."""
    return {
        "repo": f.repo,
        "path": f.path,
        "language": f.language,
        "content": f.content,
        "license": f.license,
        "stars": int(f.stars),
        "split": f.split,
        "sha256": f.sha256,
        "meta": json.dumps(f.meta, sort_keys=True),
    }


def from_row(row: dict) -> SourceFile:
    """The SourceFile of a Parquet row (inverse of `to_row`)."""
    meta = row.get("meta") or "{}"
    return SourceFile(
        repo=row["repo"],
        path=row["path"],
        language=row["language"],
        content=row["content"],
        license=row.get("license") or "",
        stars=int(row.get("stars") or 0),
        split=row.get("split") or "",
        sha256=row.get("sha256") or "",
        meta=json.loads(meta) if isinstance(meta, str) else dict(meta),
    )


def write_parquet(files: Iterable[SourceFile], path: str | Path) -> int:
    """Write files as one Parquet shard (zstd); returns the number of rows."""
    rows = [to_row(f) for f in files]
    table = pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA)
    pq.write_table(table, str(path), compression="zstd")
    return len(rows)


def iter_parquet(path: str | Path, *, batch_size: int = 256) -> Iterator[SourceFile]:
    """Stream the SourceFiles of one Parquet shard, batch by batch."""
    pf = pq.ParquetFile(str(path))
    for batch in pf.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield from_row(row)


def read_corpus(data_dir: str | Path, split: str) -> Iterator[SourceFile]:
    """Stream the SourceFiles of one split ("train"/"valid"/"test") of a finished corpus stage."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    d = Path(data_dir)
    if not is_done(d):
        raise ValueError(f"corpus stage not finished in {d}: run `lightcoder data`")
    for shard in sorted(d.glob(f"{split}-*.parquet")):
        yield from iter_parquet(shard)
