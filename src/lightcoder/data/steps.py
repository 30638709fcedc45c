"""The per-shard work of the corpus pipeline: the two parallel phases around the global dedup.

    map_shard     read -> clean -> licence header -> generated -> heuristics -> decontamination
                  -> hash + MinHash (decontamination runs here, on the original text, so it
                  shares the word-token hashes with MinHash)
    (dedup.py)    global: exact + near duplicates, one pass over all signatures
    finish_shard  drop duplicates -> PII -> commented-out code -> syntax -> static analysis

Each phase writes one directory per shard (`work/map/00012/`, `work/finish/00012/`) holding
files.parquet, stats.json, rejected.jsonl (at most `max_rejected_per_reason` lines per reason)
and, last, DONE; a rerun skips shards with DONE, so a crash loses at most the shards in flight.
A shard is a list of whole repositories fixed by the plan (pipeline.py), not by the worker
count, and every random choice is seeded by (seed, file path), so any executor (the local
process pool, datatrove, one process) produces the same bytes.
"""

from __future__ import annotations

import json
import resource
import shutil
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from lightcoder.artifacts import is_done, mark_done, write_json_atomic
from lightcoder.data import analysis, archives, stack
from lightcoder.data.comments import remove_commented_code
from lightcoder.data.dedup import cluster, normalized_sha256
from lightcoder.data.filters import check_generated, check_size, decode_source, refine_language
from lightcoder.data.license import license_check, license_of_header
from lightcoder.data.minhash import MinHasher, strip_leading_comments, token_hashes
from lightcoder.data.pii import redact
from lightcoder.data.quality import check_heuristics, check_syntax, can_check_syntax
from lightcoder.data.records import SourceFile, iter_parquet, write_parquet
from lightcoder.languages import language_for_path, tree_sitter_parser


def _cpu_seconds() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


class ShardLog:
    """Drops per stage and reason, extra counters, and capped rejected samples of one shard."""

    def __init__(self, max_per_reason: int) -> None:
        self.dropped: dict[str, dict[str, dict[str, int]]] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.samples: list[dict] = []
        self._per_reason: dict[str, int] = {}
        self.max_per_reason = max_per_reason
        self._last = _cpu_seconds()

    def drop(self, stage: str, reason: str, detail: str, *, repo: str, path: str, size: int,
             content: str = "") -> None:
        c = self.dropped.setdefault(stage, {}).setdefault(reason, {"files": 0, "bytes": 0})
        c["files"] += 1
        c["bytes"] += size
        n = self._per_reason.get(reason, 0)
        if n < self.max_per_reason:
            self._per_reason[reason] = n + 1
            self.samples.append({"repo": repo, "path": path, "reason": reason, "detail": detail,
                                 "size": size, "stage": stage, "excerpt": content[:300]})

    def tick(self, step: str) -> None:
        """Charge the CPU time since the last tick (this process + waited children) to step."""
        now = _cpu_seconds()
        self.count("cpu_ms", step, int(round((now - self._last) * 1000)))
        self._last = now

    def count(self, group: str, key: str, n: int = 1) -> None:
        g = self.counters.setdefault(group, {})
        g[key] = g.get(key, 0) + n

    def write(self, shard_dir: Path, extra: dict) -> None:
        with open(shard_dir / "rejected.jsonl", "w", encoding="utf-8") as fh:
            for row in self.samples:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json_atomic(shard_dir / "stats.json", {"dropped": self.dropped,
                                                     "counters": self.counters, **extra})


def _read_refs(refs: list[dict], log: ShardLog) -> Iterator[tuple[dict, bytes]]:
    """(ref, bytes) for each readable file of a shard; unreadable ones are logged."""
    by_source: dict[tuple[str, str], list[dict]] = {}
    for ref in refs:
        by_source.setdefault((ref["kind"], ref["source"]), []).append(ref)
    for (kind, source), group in by_source.items():
        if kind in ("dir", "git"):
            items = []
            for ref in group:
                try:
                    with open(ref["loc"], "rb") as fh:
                        items.append((ref, fh.read()))
                except OSError as e:
                    items.append((ref, e))
        elif kind == "stack":
            data = dict(stack.read_rows(source, [r["loc"] for r in group]))
            items = [(ref, data.get(ref["loc"], KeyError(ref["loc"]))) for ref in group]
        else:
            data = dict(archives.read_members(source, kind, [r["loc"] for r in group]))
            items = [(ref, data.get(ref["loc"], KeyError(ref["loc"]))) for ref in group]
        for ref, data in items:
            if isinstance(data, Exception):
                log.drop("clean", "unreadable", f"{type(data).__name__}: {data}", repo=ref["repo"],
                         path=ref["path"], size=ref["size"])
            else:
                yield ref, data


MAX_CLUSTERS_LISTED = 200  # clusters.jsonl keeps the largest ones
_DECONTAMINATORS: dict = {}


def _decontaminator(cfg):
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

    _decontaminator(cfg)
    if cfg.pii.enabled:
        _plugins(tuple(cfg.pii.secret_types))
    for language in languages:
        if can_check_syntax(language):
            tree_sitter_parser(language)
    analysis.ruff_path()


def map_shard(index: int, *, plan: dict, cfg, work: Path) -> None:
    """Phase 1 of one shard: read and check files, hash them; see the module docstring."""
    out = work / "map" / f"{index:05d}"
    if is_done(out):
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shard = plan["shards"][index]
    log = ShardLog(cfg.max_rejected_per_reason)
    hasher = MinHasher()
    decontaminator = _decontaminator(cfg)
    repos = plan["repos"]
    kept: list[SourceFile] = []
    sigs = []
    log.tick("plan")
    for ref, data in _read_refs(shard["refs"], log):
        log.tick("read")
        repo = repos[ref["repo"]]
        path, size = ref["path"], len(data)
        check = check_size(size, cfg.max_file_bytes)
        text = ""
        if check is None:
            text, check = decode_source(data)
        log.tick("clean")
        stage = "clean"
        language = language_for_path(path) or ""
        if check is None:
            language = refine_language(path, language, text)
            if language not in cfg.languages:
                check = ("language", f"{language} (by content) is not in the allowed languages")
        if check is None and cfg.license.check_headers:
            lic = license_of_header(text)
            check = license_check(lic, copyleft=cfg.license.copyleft, unknown="keep",
                                  allow=cfg.license.allow) if lic else None
            stage = "license"
        log.tick("license")
        if check is None:
            check, stage = check_generated(path, text), "generated"
        log.tick("generated")
        if check is None and cfg.use_heuristics:
            check, stage = check_heuristics(text, **cfg.heuristics()), "heuristics"
        log.tick("heuristics")
        tokens = None
        if check is None:  # word-token hashes of the body, shared by decontam and MinHash
            tokens = token_hashes(strip_leading_comments(text).encode("utf-8"))
            if decontaminator is not None:
                check, stage = decontaminator.check(text, tokens), "decontam"
        log.tick("decontam")
        if check is not None:
            log.drop(stage, check[0], check[1], repo=ref["repo"], path=path, size=size,
                     content=text)
            continue
        sigs.append(hasher.signature(text, tokens))
        log.tick("minhash")
        kept.append(SourceFile(
            repo=ref["repo"], path=path, language=language, content=text,
            license=repo["license"], stars=repo["stars"], sha256=normalized_sha256(text),
            meta={"size": size, "lines": text.count("\n") + (not text.endswith("\n")),
                  "rank": repo["rank"], "repo_score": repo["score"]}))
    write_parquet(kept, out / "files.parquet")
    log.tick("write")
    np.save(out / "sig.npy", np.stack(sigs) if sigs else np.zeros((0, hasher.num_perm), np.uint32))
    log.write(out, {"files": len(kept)})
    mark_done(out, {"files": len(kept)})


def finish_shard(index: int, *, cfg, work: Path) -> None:
    """Phase 3 of one shard: drop duplicates, redact, prune comments, syntax/analysis/decontam."""
    out = work / "finish" / f"{index:05d}"
    if is_done(out):
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log = ShardLog(cfg.max_rejected_per_reason)
    dup_path = work / "dedup" / "dropped" / f"{index:05d}.json"
    dups = json.loads(dup_path.read_text()) if dup_path.exists() else {}
    files: list[SourceFile] = []
    for row, f in enumerate(iter_parquet(work / "map" / f"{index:05d}" / "files.parquet")):
        size = int(f.meta["size"])
        if str(row) in dups:
            reason, detail = dups[str(row)]
            log.drop("dedup", reason, detail, repo=f.repo, path=f.path, size=size,
                     content=f.content)
            continue
        text = f.content
        log.tick("read")
        if cfg.pii.enabled:
            text, counts = redact(text, secret_types=tuple(cfg.pii.secret_types))
            for kind, n in counts.items():
                log.count("pii", kind, n)
            if counts:
                log.count("pii", "files")
        log.tick("pii")
        if cfg.comments.enabled:
            text, found, deleted = remove_commented_code(text, f.language, f.path,
                                                         cfg=cfg.comments, seed=cfg.seed)
            if found:
                log.count("comments", "blocks_found", found)
                log.count("comments", "blocks_deleted", deleted)
                log.count("comments", "files_changed", deleted > 0)
        log.tick("comments")
        files.append(replace(f, content=text))

    ruff, ruff_syntax = {}, {}
    syntax_on = cfg.syntax.enabled and cfg.syntax_check
    ruff_parses = syntax_on and cfg.syntax.python_parser == "ruff" and \
        analysis.ruff_path() is not None
    if cfg.analysis.enabled or ruff_parses:
        py = {str(i): f.content for i, f in enumerate(files) if f.language == "Python"}
        rules = cfg.analysis.python_rules if cfg.analysis.enabled else []
        ruff, ruff_syntax = analysis.ruff_check(py, rules)
        external: dict[str, dict[str, int]] = {}  # {file index: {"cppcheck:<id>" | "eslint:<rule>": hits}}
        if cfg.analysis.enabled and cfg.analysis.external:
            cpp = {str(i): (f.content, f.language) for i, f in enumerate(files) if f.language in ("C", "C++")}
            external = analysis.cppcheck_hits(cpp, cfg.analysis.cppcheck_rules)
            js = {str(i): f.content for i, f in enumerate(files) if f.language == "JavaScript"}
            for key, per_rule in analysis.eslint_hits(js, cfg.analysis.eslint_rules).items():
                external.setdefault(key, {}).update(per_rule)
        if py and analysis.ruff_path() is None and cfg.analysis.enabled:
            log.count("analysis", "python_unchecked_no_ruff", len(py))
        log.tick("analysis")
    kept: list[SourceFile] = []
    for i, f in enumerate(files):
        size = int(f.meta["size"])
        check, stage = None, "syntax"
        tree = None
        by_ruff = ruff_parses and f.language == "Python"
        if can_check_syntax(f.language) and not by_ruff and (syntax_on or cfg.analysis.enabled):
            tree = tree_sitter_parser(f.language).parse(f.content.encode("utf-8"))
        log.tick("syntax")
        if by_ruff:
            error = ruff_syntax.get(str(i))
            check = ("syntax_error", error) if error else None
        elif syntax_on:
            check = check_syntax(f.content, f.language, cfg.syntax.limit(f.language), tree)
            if tree is None:
                log.count("syntax", f"unchecked:{f.language}")
        if check is None and cfg.analysis.enabled:
            hits = dict(ruff.get(str(i), {}))
            hits.update(external.get(str(i), {}))
            hits.update(analysis.ts_rule_hits(f.content, f.language, cfg.analysis.ts_rules,
                                              tree=tree))
            for rule, n in hits.items():
                log.count("analysis", rule, n)
            log.tick("analysis")
            if hits:
                check, stage = ("static_analysis", ", ".join(f"{r} x{n}" for r, n in
                                                             sorted(hits.items()))), "analysis"
        if check is not None:
            log.drop(stage, check[0], check[1], repo=f.repo, path=f.path, size=size,
                     content=f.content)
            continue
        new_size = len(f.content.encode("utf-8"))
        meta = {**f.meta, "size": new_size, "lines": f.content.count("\n") + (
            not f.content.endswith("\n"))}
        if new_size != size:
            meta["original_size"] = size
        kept.append(replace(f, meta=meta))
    write_parquet(kept, out / "files.parquet")
    log.tick("write")
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
