"""JSONL / Parquet files in The Stack's layout as corpus sources.

Each row is one file: `content`, `path`, `repo_name`, `license` (a string or a list of SPDX ids),
optional `stars`. The Stack v1's `max_stars_repo_path` / `max_stars_repo_name` /
`max_stars_repo_licenses` / `max_stars_count` columns are accepted too. Repositories are grouped
by `repo_name` and keep their real name (no source prefix), so one project found in two datasets
is recognised as a duplicate by the repository dedup (ranking.py).

The listing reads every row once for its metadata (content length only); a file's `loc` is its
byte offset (plain JSONL), its line number (gzipped JSONL) or "row_group:row" (Parquet), and a
shard reads its rows back with `read_rows`. A row without content/path/repo_name (or whose content is
not text) is a problem "bad_row"; an unparseable line is "bad_json"; a `stars` that is not a count
counts 0; a Parquet file without a `content` column is a "broken_archive" naming its columns.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from lightcoder.data.listing import FileRef, Problem, Repo

_ALIASES = {
    "path": ("path", "max_stars_repo_path"),
    "repo_name": ("repo_name", "max_stars_repo_name", "repo"),
    "license": ("license", "licenses", "max_stars_repo_licenses"),
    "stars": ("stars", "max_stars_count"),
}


def _get(row: dict, key: str):
    for name in _ALIASES.get(key, (key,)):
        if row.get(name) is not None:
            return row[name]
    return None


def _license(value) -> str:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value or "")


def _stars(value) -> int:
    # Metadata only (ranking): a value that is not a count ("many") counts as 0 and keeps its row.
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf (JSON's Infinity, 1e400)
        return 0


def _rows_meta(path: Path) -> Iterator[tuple[str, dict | None, str]]:
    """(loc, row metadata or None, error) for every row; content is replaced by its byte size."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        pf = pq.ParquetFile(path)
        if "content" not in pf.schema_arrow.names:
            raise ValueError(f"no `content` column (it has {pf.schema_arrow.names[:8]}); a Stack-layout file "
                             "needs content, path and repo_name")
        cols = [c for c in pf.schema_arrow.names if c != "content"]
        for g in range(pf.num_row_groups):
            meta = pf.read_row_group(g, columns=cols).to_pylist()
            sizes = pf.read_row_group(g, columns=["content"]).column(0)
            for i, row in enumerate(meta):
                content = sizes[i].as_py()
                row["content"] = len(content.encode("utf-8", "surrogatepass")) if isinstance(content, str) else None
                yield f"{g}:{i}", row, ""
        return
    gz = name.endswith(".gz")
    opener = gzip.open(path, "rb") if gz else open(path, "rb")
    with opener as fh:
        offset, lineno = 0, 0
        for line in fh:
            loc = str(lineno if gz else offset)
            offset += len(line)
            lineno += 1
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield loc, None, f"bad_json: {e.msg} at column {e.colno}"
                continue
            if not isinstance(row, dict):
                yield loc, None, "bad_json: not an object"
                continue
            content = row.get("content")
            # surrogatepass: a row with a lone surrogate ("\ud800") is measured, not an error that ends the file
            row["content"] = len(content.encode("utf-8", "surrogatepass")) if isinstance(content, str) else None
            yield loc, row, ""


def list_rows(path: Path):
    """The repositories of a Stack-layout file (see module docstring)."""
    repos: dict[str, Repo] = {}
    problems: list[Problem] = []
    try:
        for loc, row, error in _rows_meta(path):
            if row is None:
                problems.append(Problem(path.name, f"{path.name}@{loc}", "bad_json", error))
                continue
            repo_name, file_path = _get(row, "repo_name"), _get(row, "path")
            if not repo_name or not file_path or row["content"] is None:
                problems.append(Problem(str(repo_name or path.name), f"{path.name}@{loc}",
                                        "bad_row", "row lacks content, path or repo_name"))
                continue
            repo_name = str(repo_name)
            repo = repos.get(repo_name)
            if repo is None:
                repo = repos[repo_name] = Repo(name=repo_name, source=str(path), kind="stack",
                                               license=_license(_get(row, "license")),
                                               license_from="rows")
            repo.stars = max(repo.stars, _stars(_get(row, "stars")))
            repo.files.append(FileRef(repo=repo_name, path=f"{repo_name}/{file_path}",
                                      size=int(row["content"]), loc=loc))
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as e:  # pyarrow errors are ValueError/OSError
        problems.append(Problem(path.name, path.name, "broken_archive", f"{type(e).__name__}: {e}"))
    out = sorted(repos.values(), key=lambda r: r.name)
    if problems:
        holder = Repo(name=path.name, source=str(path), kind="stack", problems=problems)
        out.append(holder)
    return out


def read_rows(path: Path | str, locs: list[str]) -> Iterator[tuple[str, bytes | Exception]]:
    """(loc, UTF-8 content bytes) for each wanted row, in the order given. A lone surrogate ("\ud800" in the
    JSON) is kept as its invalid bytes, so the file is counted undecodable downstream, not a broken listing."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".parquet"):
        pf = pq.ParquetFile(p)
        by_group: dict[int, list[int]] = {}
        for loc in locs:
            g, i = map(int, loc.split(":"))
            by_group.setdefault(g, []).append(i)
        found: dict[str, bytes] = {}
        for g, rows in by_group.items():
            col = pf.read_row_group(g, columns=["content"]).column(0)
            for i in rows:
                found[f"{g}:{i}"] = col[i].as_py().encode("utf-8", "surrogatepass")
        for loc in locs:
            yield loc, found[loc]
        return
    if name.endswith(".gz"):
        wanted = {int(x) for x in locs}
        found = {}
        with gzip.open(p, "rb") as fh:
            for lineno, line in enumerate(fh):
                if lineno in wanted:
                    found[str(lineno)] = json.loads(line)["content"].encode("utf-8", "surrogatepass")
        for loc in locs:
            yield loc, found.get(loc, KeyError(loc))
        return
    with open(p, "rb") as fh:
        for loc in locs:
            fh.seek(int(loc))
            try:
                yield loc, json.loads(fh.readline())["content"].encode("utf-8", "surrogatepass")
            except (ValueError, KeyError) as e:
                yield loc, e
