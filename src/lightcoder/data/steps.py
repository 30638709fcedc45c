"""The per-shard work of the corpus pipeline: the two parallel phases around the global dedup.

    map_shard     read, then the steps of map_steps.MAP_STEPS (clean -> licence header ->
                  generated -> heuristics -> decontamination -> hash + MinHash)
    run_dedup     global: exact + near duplicates, one pass over all signatures (dedup.py)
    finish_shard  the steps of finish_steps.FINISH_STEPS (drop duplicates -> PII ->
                  commented-out code -> linters -> syntax -> static analysis)

Both phases run their step list with curation.run_steps, which times each step and checks its
drops. Each phase writes one directory per shard (`work/map/00012/`, `work/finish/00012/`)
holding files.parquet, stats.json, rejected.jsonl (at most `max_rejected_per_reason` lines per
reason) and, last, DONE; a rerun skips shards with DONE, so a crash loses at most the shards in
flight. A shard is a list of whole repositories fixed by the plan (pipeline.py), not by the
worker count, and every random choice is seeded by (seed, file path), so any executor (the
local process pool, datatrove, one process) produces the same bytes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lightcoder.artifacts import is_done, mark_done, write_json_atomic
from lightcoder.data import analysis
from lightcoder.data.curation import Scratch, ShardLog, cpu_seconds, run_steps
from lightcoder.data.dedup import cluster
from lightcoder.data.finish_steps import FINISH_STEPS
from lightcoder.data.map_steps import MAP_STEPS, Hash, read_refs
from lightcoder.data.quality import can_check_syntax
from lightcoder.data.records import SourceFile, iter_parquet, write_parquet
from lightcoder.languages import tree_sitter_parser


MAX_CLUSTERS_LISTED = 200  # clusters.jsonl keeps the largest ones
_DECONTAMINATORS: dict = {}


def decontaminator(cfg):
    """The benchmark n-gram set, built once per process and config."""
    if not cfg.decontam.enabled:
        return None
    from lightcoder.data.decontam import Decontaminator

    key = json.dumps(asdict(cfg.decontam), sort_keys=True)
    if key not in _DECONTAMINATORS:
        _DECONTAMINATORS[key] = Decontaminator(cfg.decontam)
    return _DECONTAMINATORS[key]


def warm_up(cfg, languages: set[str]) -> None:
    """Import and build what every shard needs once, before the pool forks, so workers inherit
    it instead of each paying for it (detect-secrets plugins, grammars, the benchmark n-grams)."""
    from lightcoder.data.pii import _plugins

    decontaminator(cfg)
    if cfg.pii.enabled:
        _plugins(tuple(cfg.pii.secret_types))
    for language in languages:
        if can_check_syntax(language):
            tree_sitter_parser(language)
    analysis.ruff_path()


def _fresh_dir(work: Path, phase: str, index: int) -> Path | None:
    """work/<phase>/<index>, emptied; None when that shard is already done."""
    out = work / phase / f"{index:05d}"
    if is_done(out):
        return None
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def _write(kept: Iterable[SourceFile], out: Path, log: ShardLog) -> list[SourceFile]:
    """Drain the step chain into out/files.parquet (timed as "write"); returns the files."""
    kept = list(kept)
    start = cpu_seconds()
    write_parquet(kept, out / "files.parquet")
    log.count("cpu_ms", "write", round((cpu_seconds() - start) * 1000))
    return kept


def map_shard(index: int, *, plan: dict, cfg, work: Path) -> None:
    """Phase 1 of one shard: read, check and hash its files; see the module docstring."""
    out = _fresh_dir(work, "map", index)
    if out is None:
        return
    log, scratch = ShardLog(cfg.max_rejected_per_reason), Scratch()
    steps = [step(cfg, log, scratch, decontaminator=decontaminator(cfg)) for step in MAP_STEPS]
    files = read_refs(plan["shards"][index]["refs"], plan["repos"], scratch)
    kept = _write(run_steps(steps, files, log), out, log)
    hashed = next(s for s in steps if isinstance(s, Hash))
    np.save(out / "sig.npy", hashed.signature_matrix())
    log.write(out, {"files": len(kept)})
    mark_done(out, {"files": len(kept)})


def finish_shard(index: int, *, cfg, work: Path) -> None:
    """Phase 3 of one shard: drop duplicates, redact, prune comments, syntax and analysis."""
    out = _fresh_dir(work, "finish", index)
    if out is None:
        return
    log = ShardLog(cfg.max_rejected_per_reason)
    marked_path = work / "dedup" / "dropped" / f"{index:05d}.json"
    marked = json.loads(marked_path.read_text()) if marked_path.exists() else {}
    files = iter_parquet(work / "map" / f"{index:05d}" / "files.parquet")
    scratch = Scratch()
    steps = [step(cfg, log, scratch, marked=marked) for step in FINISH_STEPS]
    kept = _write(run_steps(steps, files, log), out, log)
    repo_bytes: dict[str, int] = {}
    for f in kept:
        repo_bytes[f.repo] = repo_bytes.get(f.repo, 0) + int(f.meta["size"])
    log.write(out, {"files": len(kept), "repo_bytes": repo_bytes})
    mark_done(out, {"files": len(kept)})


def ref_dict(ref, repo) -> dict:
    """A FileRef as the JSON the plan stores (with its repo's kind and source)."""
    return {**asdict(ref), "kind": repo.kind, "source": repo.source}


def run_dedup(cfg, work: Path, count: int) -> None:
    """The global dedup phase: writes dedup/dropped/<shard>.json and dedup/clusters.jsonl."""
    import pyarrow.parquet as pq

    out = work / "dedup"
    if is_done(out):
        return
    shutil.rmtree(out, ignore_errors=True)
    (out / "dropped").mkdir(parents=True)
    docs: list[tuple[int, str, int, int]] = []  # (rank, path, shard, row)
    shas: list[str] = []
    for i in range(count):
        t = pq.read_table(work / "map" / f"{i:05d}" / "files.parquet",
                          columns=["path", "sha256", "meta"]).to_pydict()
        for row, (path, sha, meta) in enumerate(zip(t["path"], t["sha256"], t["meta"])):
            docs.append((json.loads(meta)["rank"], path, i, row))
            shas.append(sha)
    sigs = np.lib.format.open_memmap(out / "sigs.npy", mode="w+", dtype=np.uint32,
                                     shape=(len(docs), 256))
    pos = 0
    for i in range(count):
        s = np.load(work / "map" / f"{i:05d}" / "sig.npy", mmap_mode="r")
        sigs[pos: pos + len(s)] = s
        pos += len(s)
    order = sorted(range(len(docs)), key=lambda d: docs[d][:2])
    priority = np.empty(len(docs), dtype=np.int64)
    priority[order] = np.arange(len(docs))
    dropped = cluster(priority, shas, sigs, threshold=cfg.dedup_threshold, near=cfg.near_dedup)
    per_shard: dict[int, dict[str, list]] = {}
    clusters: dict[int, list[tuple[int, float]]] = {}
    for d, (reason, kept, sim) in dropped.items():
        path = docs[kept][1]
        detail = f"same content as {path}" if reason == "duplicate" else \
            f"near-duplicate of {path} (estimated Jaccard {sim:.2f})"
        per_shard.setdefault(docs[d][2], {})[str(docs[d][3])] = [reason, detail]
        clusters.setdefault(kept, []).append((d, sim))
    for i, rows in per_shard.items():
        write_json_atomic(out / "dropped" / f"{i:05d}.json", rows)
    biggest = sorted(clusters.items(), key=lambda kv: (-len(kv[1]), docs[kv[0]][:2]))
    with open(out / "clusters.jsonl", "w", encoding="utf-8") as fh:
        for kept, members in biggest[:MAX_CLUSTERS_LISTED]:
            fh.write(json.dumps({"kept": docs[kept][1], "size": len(members) + 1,
                                 "dropped": [{"path": docs[d][1], "reason": dropped[d][0],
                                              "similarity": round(s, 3)}
                                             for d, s in sorted(members)[:50]]}) + "\n")
    del sigs
    (out / "sigs.npy").unlink()
    mark_done(out, {"files": len(docs), "dropped": len(dropped), "clusters": len(clusters)})
