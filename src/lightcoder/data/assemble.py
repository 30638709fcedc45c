"""The last step of the corpus stage: merge the shards' results into the output directory.

    funnel          the plan's drops + every shard's stats.json and rejected.jsonl, in one Tally
    split shards    <split>-<shard>.parquet; assign_splits puts whole repositories in a split
    rejected/       <reason>.jsonl, the first `max_rejected_per_reason` samples of each reason
    repos.jsonl     every repository seen, with files/bytes kept and its split
    clusters.jsonl  copied from the dedup phase
    stats           returned (pipeline.run_data adds timings and writes stats.json)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lightcoder.data import quality
from lightcoder.data.config import SPLITS
from lightcoder.data.curation import Tally
from lightcoder.data.records import iter_parquet, write_parquet

STATS_VERSION = 2


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


def shard_dir(work: Path, phase: str, index: int) -> Path:
    return work / phase / f"{index:05d}"


def merge_funnel(plan: dict, work: Path, cap: int) -> Tally:
    """Drops, counters and samples of the plan, then of every map and finish shard, in order."""
    tally = Tally(cap)
    for d in plan["drops"]:
        tally.add_drop(d["stage"], d["reason"], 1, d["size"])
        tally.add_sample(d)
    for phase in ("map", "finish"):
        for i in range(len(plan["shards"])):
            tally.merge(json.loads((shard_dir(work, phase, i) / "stats.json").read_text()))
            with open(shard_dir(work, phase, i) / "rejected.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    tally.add_sample(json.loads(line))
    return tally


def kept_repo_bytes(work: Path, count: int) -> dict[str, int]:
    """Bytes kept per repository, over all finish shards."""
    total: dict[str, int] = {}
    for i in range(count):
        stats = json.loads((shard_dir(work, "finish", i) / "stats.json").read_text())
        for repo, n in stats["repo_bytes"].items():
            total[repo] = total.get(repo, 0) + n
    return total


@dataclass
class SplitWriter:
    """Writes the kept files as per-split shards and counts them per split and language."""

    tmp: Path
    split_of: dict[str, str]  # repo -> split
    shards: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    per_split: dict[str, dict] = field(default_factory=lambda: {
        s: {"repos": set(), "files": 0, "bytes": 0} for s in SPLITS})
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    repo_files: dict[str, int] = field(default_factory=dict)

    def write_shard(self, path: Path, index: int) -> None:
        files = [replace(f, split=self.split_of[f.repo]) for f in iter_parquet(path)]
        for split in SPLITS:
            rows = sorted((f for f in files if f.split == split), key=lambda f: f.path)
            if rows:
                name = f"{split}-{index:05d}.parquet"
                write_parquet(rows, self.tmp / name)
                self.shards[split].append(name)
        for f in files:
            self._count(f.split, f.repo, f.language, int(f.meta["size"]))

    def _count(self, split: str, repo: str, language: str, size: int) -> None:
        c = self.per_split[split]
        c["repos"].add(repo)
        c["files"] += 1
        c["bytes"] += size
        lang = self.languages.setdefault(language, {"files": 0, "bytes": 0})
        lang["files"] += 1
        lang["bytes"] += size
        self.repo_files[repo] = self.repo_files.get(repo, 0) + 1

    def splits(self) -> dict[str, dict[str, int]]:
        return {s: {"repos": len(c["repos"]), "files": c["files"], "bytes": c["bytes"]}
                for s, c in self.per_split.items()}


def write_rejected(tally: Tally, directory: Path) -> None:
    for reason, rows in sorted(tally.samples.items()):
        with open(directory / f"{reason}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_repos(plan: dict, writer: SplitWriter, repo_bytes: dict[str, int], path: Path) -> None:
    """repos.jsonl: the plan's repository report plus what each repository kept."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in plan["repo_report"]:
            name = row["repo"]
            row = {**row, "files_kept": writer.repo_files.get(name, 0),
                   "bytes_kept": repo_bytes.get(name, 0), "split": writer.split_of.get(name, "")}
            if row["status"] == "kept" and not row["files_kept"]:
                row["status"] = "dropped: every file failed a file-level step"
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def funnel_rows(stages: tuple[str, ...], tally: Tally, seen: dict) -> list[dict]:
    """Per stage, in order: its drops by reason and what is left after it."""
    rows, files, nbytes = [], seen["files"], seen["bytes"]
    for name in stages:
        dropped = dict(sorted(tally.dropped.get(name, {}).items()))
        files -= sum(c["files"] for c in dropped.values())
        nbytes -= sum(c["bytes"] for c in dropped.values())
        rows.append({"stage": name, "dropped": dropped, "kept": {"files": files, "bytes": nbytes}})
    return rows


def files_per_reason(tally: Tally, stages: tuple[str, ...]) -> dict[str, int]:
    """{reason: files}, the funnel's stages first (a reason two stages share keeps the later
    stage's count)."""
    order = list(stages) + [s for s in tally.dropped if s not in stages]
    return {r: c["files"] for stage in order for r, c in tally.dropped.get(stage, {}).items()}


def stats_dict(cfg, plan: dict, stages: tuple[str, ...], tally: Tally, writer: SplitWriter,
               repo_bytes: dict[str, int]) -> dict:
    """stats.json without timings (see docs/data.md for each field)."""
    splits = writer.splits()
    cap = tally.max_per_reason
    return {
        "version": STATS_VERSION,
        "roots": plan["roots"],
        "seen": plan["seen"],
        "stages": funnel_rows(stages, tally, plan["seen"]),
        "kept": {"repos": len(repo_bytes), "files": sum(c["files"] for c in splits.values()),
                 "bytes": sum(c["bytes"] for c in splits.values())},
        "splits": splits,
        "languages": writer.languages,
        "counters": tally.counters,
        "syntax_unchecked_languages": sorted(
            lang for lang in cfg.languages if cfg.syntax.enabled and cfg.syntax_check
            and not quality.can_check_syntax(lang)),
        "rejected": {"dir": "rejected", "max_per_reason": cap,
                     "written": {r: len(v) for r, v in sorted(tally.samples.items())},
                     "capped": {r: n for r, n in files_per_reason(tally, stages).items()
                                if n > cap}},
        "shards": writer.shards,
        "config": asdict(cfg),
    }


def seen_phrase(seen_files: int, scan_problems: int) -> str:
    """What the scan found, its problems (an empty dir, a broken archive) apart from the files listed;
    seen_files counts both, as stats.json's `seen.files` does.

    Example: seen_phrase(1, 1) (an empty directory) -> "0 files listed and 1 scan problem"
    """
    listed = seen_files - scan_problems
    files = f"{listed} file{'s' if listed != 1 else ''} listed"
    return f"{files} and {scan_problems} scan problem{'s' if scan_problems != 1 else ''}" if scan_problems else files


def assemble(cfg, plan: dict, work: Path, tmp: Path, stages: tuple[str, ...]) -> dict:
    """Write the output into tmp (see the module docstring) and return the stats; `stages` is
    the funnel's stage list. ValueError when no file was kept."""
    count = len(plan["shards"])
    tally = merge_funnel(plan, work, cfg.max_rejected_per_reason)
    repo_bytes = kept_repo_bytes(work, count)
    if not repo_bytes:
        firsts = "; ".join(f"{reason}: {rows[0].get('path', '')} ({rows[0].get('detail', '')})"
                           for reason, rows in sorted(tally.samples.items()) if rows and reason != "language")
        seen = seen_phrase(plan["seen"]["files"], sum(c["files"] for c in tally.dropped.get("scan", {}).values()))
        raise ValueError(
            f"no usable source files in {', '.join(plan['roots'])}: {seen}, dropped: "
            f"{files_per_reason(tally, stages)}{' — first of each: ' + firsts if firsts else ''} "
            f"(allowed languages: {cfg.languages}; pass --corpus DIR with source files in those languages)")
    split_of = assign_splits(repo_bytes, valid_fraction=cfg.valid_fraction,
                             test_fraction=cfg.test_fraction, seed=cfg.seed)
    writer = SplitWriter(tmp, split_of)
    for i in range(count):
        writer.write_shard(shard_dir(work, "finish", i) / "files.parquet", i)
    write_rejected(tally, tmp / "rejected")
    write_repos(plan, writer, repo_bytes, tmp / "repos.jsonl")
    if (work / "dedup" / "clusters.jsonl").exists():
        shutil.copy(work / "dedup" / "clusters.jsonl", tmp / "clusters.jsonl")
    return stats_dict(cfg, plan, stages, tally, writer, repo_bytes)
