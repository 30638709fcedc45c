"""The corpus stage: source directories -> cleaned, deduplicated, split Parquet shards.

Run it with `lightcoder data` (or `run_data(DataConfig(), "run/data")`). Steps, each a generator
over `SourceFile` that reports what it drops:

    scan (sources.py) -> clean (filters.py) -> dedup (dedup.py) -> quality (quality.py) -> split

Output directory (complete when DONE exists):

    train-00000.parquet ...   SourceFile rows (records.PARQUET_SCHEMA), per split, sorted by path
    stats.json                the funnel: seen, dropped per stage and reason, kept, per-split counts
    rejected/<reason>.jsonl   {repo, path, reason, detail, size, stage}, at most
                              max_rejected_per_reason lines each (stats.json has the true counts)
    DONE                      JSON summary, written last

Splits are by repository: whole repos, visited in the order of a hash of (seed, repo name), fill
the test and valid byte budgets (assign_splits), so no file of an evaluation repo is ever trained
on. Everything is written into a sibling temp dir that is renamed into place
(artifacts.replace_dir), so a crash never leaves a DONE next to partial data. Design cost: all
kept files are held in memory (fine for the ~30 MB stdlib corpus; a larger corpus needs the steps
run per shard).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from lightcoder.artifacts import DONE_FILE, is_done, mark_done, replace_dir, write_json_atomic
from lightcoder.data import quality
from lightcoder.data.dedup import dedup_exact
from lightcoder.data.filters import OnDrop, clean_files
from lightcoder.data.records import SPLITS, Rejection, SourceFile, iter_parquet, write_parquet
from lightcoder.data.sources import ScanStats, resolve_roots, scan_sources
from lightcoder.languages import get_language

STATS_VERSION = 1
STAGES: tuple[str, ...] = ("clean", "dedup", "quality")
# What a stage dir may contain; anything else in an unfinished out_dir means "not ours".
_STAGE_ENTRIES = ("stats.json", "rejected", DONE_FILE)


@dataclass(kw_only=True)
class DataConfig:
    sources: list[str] = field(default_factory=list)  # directories; [] = this interpreter's stdlib
    languages: list[str] = field(default_factory=lambda: ["Python"])
    max_file_bytes: int = 1_000_000
    valid_fraction: float = 0.05  # share of corpus bytes, whole repositories (see assign_splits)
    test_fraction: float = 0.05
    seed: int = 0
    syntax_check: bool = True
    use_heuristics: bool = True
    max_line_length: int = quality.MAX_LINE_LENGTH
    max_avg_line_length: float = quality.MAX_AVG_LINE_LENGTH
    min_alnum_fraction: float = quality.MIN_ALNUM_FRACTION
    rows_per_shard: int = 1000
    max_rejected_per_reason: int = 1000
    exclude_dirs: list[str] = field(default_factory=lambda: [
        "site-packages", "dist-packages", "__pycache__", ".git", ".hg", ".svn", "node_modules",
    ])
    exclude_suffixes: list[str] = field(default_factory=lambda: [".pyc", ".pyo"])

    def __post_init__(self) -> None:
        if isinstance(self.sources, str) or not all(isinstance(s, str) for s in self.sources):
            raise ValueError(
                f"data.sources must be a list of directory paths, got {self.sources!r}")
        if not self.languages:
            raise ValueError("data.languages is empty: name at least one language, e.g. ['Python']")
        for lang in self.languages:
            try:
                get_language(lang)
            except ValueError as e:
                raise ValueError(f"data.languages: {e}") from None
        for name in ("max_file_bytes", "rows_per_shard"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.max_rejected_per_reason < 0:
            raise ValueError(
                "data.max_rejected_per_reason must be >= 0 (0 writes no rejected/ lines)")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"data.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"data.valid_fraction + data.test_fraction = "
                f"{self.valid_fraction + self.test_fraction} leaves no training repos: keep it < 1"
            )

    def heuristics(self) -> dict | None:
        """Keyword arguments for quality.check_heuristics, or None when disabled."""
        if not self.use_heuristics:
            return None
        return {"max_line_length": self.max_line_length,
                "max_avg_line_length": self.max_avg_line_length,
                "min_alnum_fraction": self.min_alnum_fraction}


# ---------------------------------------------------------------- splits

def repo_unit(repo: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, repo name).

    Example: repo_unit("json", 0) is the same on every machine and run.
    """
    digest = hashlib.sha256(f"{seed}:{repo}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(repo_bytes: dict[str, int], *, valid_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, str]:
    """Split name per repo, filling test then valid up to their share of bytes, in hash order.

    Repos are visited in order of `repo_unit(repo, seed)`; a repo goes to test if it still fits in
    test_fraction of the corpus bytes, else to valid if it fits in valid_fraction, else to train.
    So one giant package (the stdlib's test/, half the bytes) can never become the whole eval set.
    With >= 3 repos every split gets at least one repo (with 2: train and test; with 1: train):
    an empty test/valid split takes the smallest repo of a split that has several.
    Example: assign_splits({"a": 10, "b": 10, "c": 10}, valid_fraction=0.05,
    test_fraction=0.05, seed=0) gives each split one repo.
    """
    order = sorted(repo_bytes, key=lambda r: (repo_unit(r, seed), r))
    total = sum(repo_bytes.values())
    budget = {"test": test_fraction * total, "valid": valid_fraction * total}
    used = {"test": 0, "valid": 0}
    split = {}
    for r in order:
        split[r] = "train"
        for s in ("test", "valid"):
            if used[s] + repo_bytes[r] <= budget[s]:
                split[r] = s
                used[s] += repo_bytes[r]
                break
    for target in ("train", "test", "valid")[: len(order)]:
        if target in split.values():
            continue
        sizes = {s: sum(v == s for v in split.values()) for s in SPLITS}
        donors = [r for r in order if sizes[split[r]] >= 2]  # still in hash order
        if target == "train":
            pick = max(donors, key=lambda r: repo_bytes[r])
        else:
            pick = min(donors, key=lambda r: repo_bytes[r])
        split[pick] = target
    return split


# ---------------------------------------------------------------- funnel

class Funnel:
    """Counts drops per stage and reason, and writes capped rejected/<reason>.jsonl files."""

    def __init__(self, rejected_dir: Path, max_per_reason: int) -> None:
        self.rejected_dir = rejected_dir
        self.max_per_reason = max_per_reason
        self.dropped: dict[str, dict[str, dict[str, int]]] = {s: {} for s in STAGES}
        self.written: dict[str, int] = {}
        self._handles: dict = {}

    def dropper(self, stage: str) -> OnDrop:
        def on_drop(r: Rejection) -> None:
            c = self.dropped[stage].setdefault(r.reason, {"files": 0, "bytes": 0})
            c["files"] += 1
            c["bytes"] += r.size
            n = self.written.get(r.reason, 0)
            if n < self.max_per_reason:
                if r.reason not in self._handles:
                    self._handles[r.reason] = open(self.rejected_dir / f"{r.reason}.jsonl", "w",
                                                   encoding="utf-8")
                line = json.dumps({**asdict(r), "stage": stage}, ensure_ascii=False)
                self._handles[r.reason].write(line + "\n")
                self.written[r.reason] = n + 1
        return on_drop

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()

    def reasons(self) -> dict[str, int]:
        """Dropped file count per reason over all stages."""
        counts: dict[str, int] = {}
        for stage in self.dropped.values():
            for reason, c in stage.items():
                counts[reason] = counts.get(reason, 0) + c["files"]
        return counts


# ---------------------------------------------------------------- stage

def run_data(cfg: DataConfig, out_dir: str | Path, *, force: bool = False) -> dict:
    """Build the corpus in out_dir and return its stats (see module docstring).

    Skips (returning the saved stats with "skipped": True) when out_dir/DONE exists, unless force.
    Raises ValueError for a missing/non-directory source or when no file survives the filters.
    """
    out = Path(out_dir).absolute()  # absolute: "." must have a name and a parent for the swap
    if is_done(out) and not force:
        print(f"corpus stage already done in {out} (force=True to redo)", file=sys.stderr)
        stats = json.loads((out / "stats.json").read_text())
        return {**stats, "skipped": True}
    _check_replaceable(out)
    t0 = time.perf_counter()
    roots = resolve_roots(cfg.sources)
    scan = ScanStats()
    found = scan_sources(roots, exclude_dirs=cfg.exclude_dirs,
                         exclude_suffixes=cfg.exclude_suffixes, stats=scan)
    t_scan = time.perf_counter()

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "rejected").mkdir(parents=True)
    try:
        stats = _build_corpus(cfg, roots, scan, found, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stats["seconds"]["scan"] = round(t_scan - t0, 3)
    stats["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(tmp / "stats.json", stats, sort_keys=False)
    done = {"files": stats["kept"]["files"], "bytes": stats["kept"]["bytes"],
            "splits": stats["splits"], "seconds": stats["seconds"]["total"]}
    mark_done(tmp, done)
    replace_dir(tmp, out)
    return {**stats, "skipped": False}


def _build_corpus(cfg: DataConfig, roots: list[Path], scan: ScanStats, found: list,
                  tmp: Path) -> dict:
    """Run the steps over found files, write shards and rejected/ into tmp; return the stats."""
    t0 = time.perf_counter()
    funnel = Funnel(tmp / "rejected", cfg.max_rejected_per_reason)
    try:
        bar = tqdm(found, desc="corpus", unit="file", file=sys.stderr, disable=None,
                   mininterval=0.5)
        files = clean_files(bar, languages=frozenset(cfg.languages),
                            max_file_bytes=cfg.max_file_bytes, on_drop=funnel.dropper("clean"))
        files = dedup_exact(files, on_drop=funnel.dropper("dedup"))
        files = quality.quality_files(files, syntax_check=cfg.syntax_check,
                                      heuristics=cfg.heuristics(),
                                      on_drop=funnel.dropper("quality"))
        kept = list(files)
        bar.close()
    finally:
        funnel.close()
    t_process = time.perf_counter()
    if not kept:
        where = ", ".join(str(r) for r in roots)
        raise ValueError(
            f"no usable source files in {where}: {len(found)} files seen, dropped: "
            f"{funnel.reasons()} (allowed languages: {cfg.languages}; pass --corpus DIR with "
            "source files in those languages)"
        )

    repo_bytes: dict[str, int] = {}
    for f in kept:
        repo_bytes[f.repo] = repo_bytes.get(f.repo, 0) + int(f.meta["size"])
    split_of = assign_splits(repo_bytes, valid_fraction=cfg.valid_fraction,
                             test_fraction=cfg.test_fraction, seed=cfg.seed)
    kept = [replace(f, split=split_of[f.repo]) for f in kept]
    shards = _write_shards(kept, tmp, cfg.rows_per_shard)
    t_write = time.perf_counter()

    stats = _build_stats(cfg, roots, scan, found, funnel, kept, shards)
    stats["seconds"] = {"process": round(t_process - t0, 3), "write": round(t_write - t_process, 3)}
    return stats


def read_corpus(data_dir: str | Path, split: str) -> Iterator[SourceFile]:
    """Stream the SourceFiles of one split ("train"/"valid"/"test") of a finished corpus stage."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    d = Path(data_dir)
    if not is_done(d):
        raise ValueError(f"corpus stage not finished in {d}: run `lightcoder data`")
    for shard in sorted(d.glob(f"{split}-*.parquet")):
        yield from iter_parquet(shard)


# ---------------------------------------------------------------- helpers

def _write_shards(kept: list[SourceFile], out: Path, rows_per_shard: int) -> dict[str, list[str]]:
    shards: dict[str, list[str]] = {}
    for split in SPLITS:
        rows = sorted((f for f in kept if f.split == split), key=lambda f: f.path)
        shards[split] = []
        for i in range(0, len(rows), rows_per_shard):
            name = f"{split}-{i // rows_per_shard:05d}.parquet"
            write_parquet(rows[i: i + rows_per_shard], out / name)
            shards[split].append(name)
    return shards


def _count(files: list[SourceFile]) -> dict[str, int]:
    return {"repos": len({f.repo for f in files}), "files": len(files),
            "bytes": sum(int(f.meta["size"]) for f in files)}


def _build_stats(cfg: DataConfig, roots: list[Path], scan: ScanStats, found: list,
                 funnel: Funnel, kept: list[SourceFile], shards: dict[str, list[str]]) -> dict:
    seen = {"repos": len({f.repo for f in found}), "files": len(found),
            "bytes": sum(f.size for f in found)}
    stages, files, nbytes = [], seen["files"], seen["bytes"]
    for name in STAGES:
        dropped = dict(sorted(funnel.dropped[name].items()))
        files -= sum(c["files"] for c in dropped.values())
        nbytes -= sum(c["bytes"] for c in dropped.values())
        stages.append({"stage": name, "dropped": dropped,
                       "kept": {"files": files, "bytes": nbytes}})
    languages: dict[str, dict[str, int]] = {}
    for f in kept:
        c = languages.setdefault(f.language, {"files": 0, "bytes": 0})
        c["files"] += 1
        c["bytes"] += int(f.meta["size"])
    cap = cfg.max_rejected_per_reason
    capped = {reason: n for reason, n in funnel.reasons().items() if n > cap}
    return {
        "version": STATS_VERSION,
        "roots": [str(r) for r in roots],
        "seen": seen,
        "stages": stages,
        "kept": _count(kept),
        "splits": {s: _count([f for f in kept if f.split == s]) for s in SPLITS},
        "languages": languages,
        "syntax_unchecked_languages": sorted(lang for lang in cfg.languages if cfg.syntax_check
                                             and not quality.can_check_syntax(lang)),
        "scan": asdict(scan),
        "rejected": {"dir": "rejected", "max_per_reason": cap,
                     "written": dict(sorted(funnel.written.items())), "capped": capped},
        "shards": shards,
        "config": asdict(cfg),
    }


def _check_replaceable(out: Path) -> None:
    """Refuse to replace an existing directory that is not a corpus stage dir."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"corpus output {out} is a file: pass a directory path for the data stage")
    foreign = [p.name for p in out.iterdir()
               if p.name not in _STAGE_ENTRIES and not p.name.endswith(".parquet")]
    if foreign:
        raise ValueError(
            f"corpus output {out} exists and holds files that are not corpus outputs "
            f"({', '.join(sorted(foreign)[:5])}): pass an empty or new directory"
        )
