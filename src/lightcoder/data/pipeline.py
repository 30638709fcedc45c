"""The corpus stage: sources -> curated, deduplicated, split Parquet shards (aiXcoder's pipeline).

Run it with `lightcoder data` (or `run_data(DataConfig(), "run/data")`). Phases, in order; the
per-shard ones run a list of curation steps (curation.py), each with its own config section,
counters and rejected samples:

    plan      list sources (sources.py), licence + repo dedup + ranking (ranking.py), shards
    map       per shard, parallel: clean, licence header, generated, heuristics, decontamination,
              MinHash (map_steps.MAP_STEPS, run by steps.map_shard)
    dedup     global: exact + near duplicates, keeping the best-ranked repo's copy (dedup.py)
    finish    per shard, parallel: PII, commented-out code, syntax, static analysis
              (finish_steps.FINISH_STEPS, run by steps.finish_shard)
    assemble  merge the shards' funnels, split by repository, write the output (assemble.py)

Output directory (complete when DONE exists):

    train-00000.parquet ...   SourceFile rows (records.PARQUET_SCHEMA), per split
    stats.json                the funnel: seen, dropped per stage and reason, kept, counters
    repos.jsonl               every repository seen: licence, score, files seen/kept, status
    clusters.jsonl            the largest near-duplicate clusters (kept file + dropped copies)
    rejected/<reason>.jsonl   samples of dropped files with reason, detail and an excerpt
    DONE                      JSON summary, written last

Work happens in `.<out>.work/` next to the output: per-shard results with DONE markers, so a
rerun after a crash or Ctrl-C resumes where it stopped (the plan is reused while the config is
unchanged). Memory is bounded by the shard size, plus a few hundred bytes per file in the
global dedup (path, hash, 25 LSH band keys).
Execution: a local process pool (`data.workers`, 0 = all cores) or datatrove's executors
(`data.engine = "datatrove"`, executors.py). Splits are by repository: whole repos, visited in the
order of a hash of (seed, repo name), fill the test and valid byte budgets (assign_splits).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
import time
from functools import partial
from pathlib import Path

from lightcoder.artifacts import (DONE_FILE, is_done, mark_done, replace_dir, write_json_atomic,
                                  write_text_atomic)
from lightcoder.data import steps
from lightcoder.data.assemble import assemble
from lightcoder.data.config import DataConfig
from lightcoder.data.curation import funnel_stages
from lightcoder.data.filters import check_language
from lightcoder.data.finish_steps import FINISH_STEPS
from lightcoder.data.map_steps import MAP_STEPS
from lightcoder.data.ranking import select_repos
from lightcoder.data.sources import (apply_manifest, list_source, read_manifest, resolve_sources,
                                     source_names)

# The funnel: the plan's repo-level stages, then every step that drops files, in step order.
# (The plan drops files of other languages under "clean", the first step's stage.)
PLAN_STAGES: tuple[str, ...] = ("scan", "license", "ranking")
FUNNEL_STAGES: tuple[str, ...] = funnel_stages(PLAN_STAGES, MAP_STEPS, FINISH_STEPS)
# What a stage dir may contain; anything else in an existing out_dir means "not ours".
_STAGE_ENTRIES = ("stats.json", "rejected", "repos.jsonl", "clusters.jsonl", "report.md",
                  "report.html", "plots", DONE_FILE)


# ---------------------------------------------------------------- plan

def build_plan(cfg: DataConfig) -> dict:
    """List the sources and decide, per repository, keep or drop; cut the kept files into shards.

    Returns a JSON-able dict: repos (kept, with rank), shards (file refs), and every repo-level
    and scan-level drop, so the funnel can account for each listed file.
    """
    roots = resolve_sources(cfg.sources)
    repos = _list_repos(cfg, roots)
    seen = {"repos": len(repos), "files": sum(len(r.files) + len(r.problems) for r in repos),
            "bytes": sum(r.bytes + sum(p.size for p in r.problems) for r in repos)}
    drops: list[dict] = []  # {stage, reason, detail, repo, path, size}
    report = {r.name: _screen_repo(r, frozenset(cfg.languages), drops) for r in repos}
    kept, dropped = select_repos(repos, license_cfg=cfg.license, ranking=cfg.ranking)
    for r, stage, reason, detail in dropped:
        report[r.name]["status"] = f"dropped: {reason} ({detail})"
        drops += [_drop(stage, reason, detail, r.name, f.path, f.size) for f in r.files]
    plan_repos, refs = {}, []
    for rank, (r, score) in enumerate(kept):
        plan_repos[r.name] = {"license": r.license, "stars": r.stars, "rank": rank,
                              "score": round(score, 4)}
        report[r.name].update(score=round(score, 4), rank=rank)
        refs += [steps.ref_dict(f, r) for f in r.files]
    return {"fingerprint": cfg.fingerprint(), "roots": [str(r) for r in roots], "seen": seen,
            "repos": plan_repos, "shards": _cut_shards(refs, cfg.shard_bytes), "drops": drops,
            "repo_report": list(report.values())}


def _list_repos(cfg: DataConfig, roots: list[Path]) -> list:
    """Every source's repositories, with the manifest's metadata applied."""
    repos = []
    for root, name in zip(roots, source_names(roots)):
        repos += list_source(root, name, multi=len(roots) > 1, layout=cfg.repo_layout,
                             exclude_dirs=cfg.exclude_dirs, exclude_suffixes=cfg.exclude_suffixes)
    if cfg.manifest:
        apply_manifest(repos, read_manifest(cfg.manifest))
    return repos


def _drop(stage: str, reason: str, detail: str, repo: str, path: str, size: int) -> dict:
    return {"stage": stage, "reason": reason, "detail": detail, "repo": repo, "path": path,
            "size": size}


def _screen_repo(r, allowed: frozenset[str], drops: list[dict]) -> dict:
    """The repository's repos.jsonl row; records its scan problems and its files in other
    languages in drops, and keeps only its files in the allowed languages."""
    row = {"repo": r.name, "source": r.source, "kind": r.kind, "license": r.license,
           "license_from": r.license_from, "stars": r.stars, "commits": r.commits,
           "test_files": r.test_files, "files_seen": len(r.files) + len(r.problems),
           "bytes_seen": r.bytes, "status": "kept"}
    drops += [_drop("scan", p.reason, p.detail, p.repo, p.path, p.size) for p in r.problems]
    keep = []
    for f in r.files:
        problem = check_language(f.path, allowed)
        if problem is None:
            keep.append(f)
        else:
            drops.append(_drop("clean", *problem, r.name, f.path, f.size))
    r.files = keep
    if not keep:
        only_problems = r.problems and not row["files_seen"] - len(r.problems)
        row["status"] = ("dropped: " + r.problems[0].reason) if only_problems else \
            "dropped: no files in the allowed languages"
    return row


def _cut_shards(refs: list[dict], shard_bytes: int) -> list[dict]:
    """Consecutive runs of refs of about shard_bytes each (a bigger file is a shard alone)."""
    shards, current, size = [], [], 0
    for ref in refs:
        if current and size + ref["size"] > shard_bytes:
            shards.append({"refs": current})
            current, size = [], 0
        current.append(ref)
        size += ref["size"]
    if current:
        shards.append({"refs": current})
    return shards


def _load_or_build_plan(cfg: DataConfig, work: Path) -> dict:
    path = work / "plan.json"
    if path.exists():
        plan = json.loads(path.read_text())
        if plan.get("fingerprint") == cfg.fingerprint():
            print(f"resuming the corpus build in {work}", file=sys.stderr)
            return plan
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    plan = build_plan(cfg)
    write_text_atomic(path, json.dumps(plan))  # no indent: the C encoder, 10x faster
    return plan


# ---------------------------------------------------------------- execution

_TASK = None  # the function a forked pool worker runs (inherited, never pickled)


def _call_task(index: int) -> int:
    _TASK(index)
    return index


def run_shards(fn, count: int, *, workers: int, desc: str) -> None:
    """fn(i) for every shard i, in a fork pool of `workers` processes (inline when 1)."""
    global _TASK
    from tqdm import tqdm

    bar = tqdm(total=count, desc=desc, unit="shard", file=sys.stderr, disable=None,
               mininterval=1.0)
    if workers <= 1 or count <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for i in range(count):
            fn(i)
            bar.update()
    else:
        _TASK = fn
        try:
            with multiprocessing.get_context("fork").Pool(min(workers, count)) as pool:
                for _ in pool.imap_unordered(_call_task, range(count)):
                    bar.update()
        finally:
            _TASK = None
    bar.close()


# ---------------------------------------------------------------- stage

def run_data(cfg: DataConfig, out_dir: str | Path, *, force: bool = False) -> dict:
    """Build the corpus in out_dir and return its stats (see module docstring).

    Skips (returning the saved stats with "skipped": True) when out_dir/DONE exists, unless
    force. Raises ValueError for a missing source or when no file survives the steps.
    """
    out = Path(out_dir).absolute()  # absolute: "." must have a name and a parent for the swap
    if is_done(out) and not force:
        print(f"corpus stage already done in {out} (force=True to redo)", file=sys.stderr)
        stats = json.loads((out / "stats.json").read_text())
        return {**stats, "skipped": True}
    _check_replaceable(out)
    work = out.parent / f".{out.name}.work"
    if force:
        shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    plan = _load_or_build_plan(cfg, work)
    t_plan = time.perf_counter()
    count = len(plan["shards"])
    if cfg.engine == "datatrove":
        from lightcoder.data.executors import run_with_datatrove

        run_with_datatrove(cfg, plan, work)
    else:
        workers = cfg.num_workers()
        steps.warm_up(cfg, set(cfg.languages))
        run_shards(partial(steps.map_shard, plan=plan, cfg=cfg, work=work), count,
                   workers=workers, desc="map")
        steps.run_dedup(cfg, work, count)
        run_shards(partial(steps.finish_shard, cfg=cfg, work=work), count, workers=workers,
                   desc="finish")
    t_steps = time.perf_counter()
    tmp = work / "out"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "rejected").mkdir(parents=True)
    stats = assemble(cfg, plan, work, tmp, FUNNEL_STAGES)
    total = time.perf_counter() - t0
    stats["seconds"] = {"plan": round(t_plan - t0, 3), "steps": round(t_steps - t_plan, 3),
                        "write": round(time.perf_counter() - t_steps, 3), "total": round(total, 3)}
    workers = max(1, min(cfg.num_workers(), count))
    language = sum(d["size"] for d in plan["drops"] if d["reason"] == "language")
    read_mb = (plan["seen"]["bytes"] - language) / 1e6  # bytes in the selected languages
    cpu_ms = sum(stats["counters"].get("cpu_ms", {}).values())
    stats["throughput"] = {"workers": workers, "mb_read": round(read_mb, 2),
                           "mb_per_wall_s": round(read_mb / max(total, 1e-9), 2),
                           "mb_per_step_cpu_s": round(read_mb / max(cpu_ms / 1000, 1e-9), 2)}
    write_json_atomic(tmp / "stats.json", stats, sort_keys=False)
    mark_done(tmp, {"files": stats["kept"]["files"], "bytes": stats["kept"]["bytes"],
                    "splits": stats["splits"], "seconds": stats["seconds"]["total"]})
    replace_dir(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    return {**stats, "skipped": False}


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
