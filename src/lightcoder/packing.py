"""Pack the corpus into fixed-length token windows (`lightcoder pack`).

In: a finished corpus stage (data/) and tokenizer (tokenizer/). Out, in shards/:

    <split>.bin   flat uint16 (uint32 if vocab > 65535) array of num_windows * seq_len token ids
    index.json    {"seq_len", "dtype", "vocab_size", "stop_id" (the id ending FIM middles), "splits": {split: {"file", "num_windows",
                  "num_tokens", "num_documents", "streams", "objectives", "languages",
                  "node_types", "strategies", ...}}, "objectives": counts, "sfim_fallbacks": n,
                  "sfim_fallback_reasons": {reason: n} (fim/mix.py FALLBACK_REASONS), "languages",
                  "node_types", "strategies" (totals over splits)}
    <split>.documents.jsonl   (pack.export_jsonl) one constructed document per line, for other
                  trainers: {"text", "repo", "path", "language", "objective", "order", "node_type"}
    DONE          the same summary plus timings, written last

Per split: repositories in a seeded random order; the files of a repository ordered by one
strategy drawn per repository from pack.sampling_weights (repo_order/strategies.py: content / path / dependency
/ random; "globally random, locally related"); each file -> `make_document` (NTP / FIM / SFIM,
PSM / SPM; fim/mix.py) -> `encode_pieces`; all documents concatenated into one stream
`<s>..</s><s>..</s>..` and cut into windows of exactly seq_len (the last partial window is
dropped). A training example is one window: inputs = window[:-1], targets = window[1:]. Windows
start mid-document, as in aiXcoder (§3.1).

Document boundaries: every document starts with exactly one `<s>` (id 1) and `<s>` occurs nowhere
else (special-token strings inside source code are encoded as text; packing checks every document
and refuses a tokenizer that breaks this), so a loader finds block-causal boundaries at the `<s>`
positions of a window.

Streams (Transformer-XL ordering, aiXcoder §4): `splits[split]["streams"]` is a list of
`[first_window, num_windows]`, one per repository stream, in window order, covering every window
exactly once. Window w belongs to the stream of the repository that owns its first token, so a
repository shorter than a window shares a stream with the repository before it, and the first
window of a stream may begin with the tail of the previous repository. Windows of one stream are
consecutive, so a loader can give window k + 1 of a stream to the same batch row at the next step.

Each file's document depends only on (seed, file): its RNG is seeded from the seed, path and
content hash (`file_rng`), so `file_document(f, cfg)` reproduces any training sample, whatever
the order or the other files. Design cost: a split's file list is held in memory.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightcoder.artifacts import AtomicFile, clear_done, mark_done, read_done, write_json_atomic
from lightcoder.data.records import SourceFile, read_corpus
from lightcoder.fim.mix import Document, make_document
from lightcoder.pack_config import MIX, PackConfig
from lightcoder.repo_balance import balance_repo, file_bytes, repo_multipliers, share_summary
from lightcoder.repo_order.strategies import choose_strategy, order_files
from lightcoder.shards import INDEX_FILE
from lightcoder.tokenizer.special_tokens import SPECIAL_TOKENS, is_special
from lightcoder.tokenizer.tokenizer import Tokenizer
from lightcoder.windows import StreamWindowWriter

_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def file_rng(seed: int, f: SourceFile, repeat: int = 0) -> random.Random:
    """The RNG of one file's document (or examples), fixed by (seed, path, content hash, repeat) alone."""
    digest = f.sha256 or hashlib.sha256(f.content.encode("utf-8")).hexdigest()
    # str seeds hash with SHA-512: stable everywhere; repeat 0 keeps the seeds of unbalanced packs
    return random.Random(f"{seed}:{f.path}:{digest}" + (f":{repeat}" if repeat else ""))


def file_document(f: SourceFile, cfg: PackConfig, repeat: int = 0) -> Document:
    """The document-level training document of one file, exactly as run_pack builds it."""
    return make_document(f.content, f.path, f.language, cfg.mix, file_rng(cfg.seed, f, repeat))


def order_split(files: Iterable[SourceFile], cfg: PackConfig, split: str) -> list[tuple[SourceFile, int]]:
    """(file, repeat) pairs of a split in stream order: repositories shuffled, files ordered per
    repository, then balanced (repo_balance.py)."""
    return _order_split(files, cfg, split)[0]


def _order_split(files: Iterable[SourceFile], cfg: PackConfig,
                 split: str) -> tuple[list[tuple[SourceFile, int]], Counter, dict]:
    """(pairs in stream order, repositories per ordering strategy, repository balance stats)."""
    repos: dict[str, list[SourceFile]] = {}
    for f in files:
        repos.setdefault(f.repo, []).append(f)
    names = sorted(repos)
    random.Random(f"{cfg.seed}:{split}:repos").shuffle(names)
    sizes = {name: sum(file_bytes(f) for f in repos[name]) for name in names}
    multipliers = repo_multipliers(sizes, cfg.repo_temperature, cfg.max_repo_repeats) if sizes else {}
    out: list[tuple[SourceFile, int]] = []
    strategies: Counter = Counter()
    balanced: dict[str, int] = {}
    for name in names:
        rng = random.Random(f"{cfg.seed}:order:{name}")
        strategy = choose_strategy(cfg.sampling_weights, rng) if cfg.sampling == MIX else cfg.sampling
        strategies[strategy] += 1
        pairs = balance_repo(order_files(repos[name], strategy, rng), multipliers[name],
                             random.Random(f"{cfg.seed}:balance:{name}"))
        balanced[name] = sum(file_bytes(f) for f, _ in pairs)
        out.extend(pairs)
    balance = {"temperature": cfg.repo_temperature, "before": share_summary(sizes), "after": share_summary(balanced),
               "repeated_repos": sum(m > 1 for m in multipliers.values()),
               "subsampled_repos": sum(m < 1 for m in multipliers.values())}
    return out, strategies, balance


def run_pack(cfg: PackConfig, data_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path, *,
             force: bool = False) -> dict:
    """Pack each split of cfg.splits into out_dir; returns the DONE summary (skips work if DONE exists)."""
    out = Path(out_dir)
    previous = read_done(out)
    if previous is not None and not force:
        return previous
    out.mkdir(parents=True, exist_ok=True)
    clear_done(out)

    t0 = time.perf_counter()
    tokenizer = Tokenizer.load(tokenizer_dir)
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32)
    index: dict = {"seq_len": cfg.seq_len, "dtype": dtype.name, "vocab_size": tokenizer.vocab_size,
                   "stop_id": tokenizer.eos_id, "splits": {}, "objectives": {}, "sfim_fallbacks": 0, "sfim_fallback_reasons": {},
                   "config": json.loads(json.dumps(asdict(cfg)))}  # as read back from JSON
    totals: Counter = Counter()
    reasons: Counter = Counter()
    languages: dict[str, Counter] = {}
    node_types: dict[str, Counter] = {}
    strategy_totals: Counter = Counter()
    for split in cfg.splits:
        files, strategies, balance = _order_split(read_corpus(data_dir, split), cfg, split)
        export = out / f"{split}.documents.jsonl" if cfg.export_jsonl else None
        if cfg.mix.level == "context":
            from lightcoder.pack_context import pack_split_context

            stats = pack_split_context(files, tokenizer, cfg, out, split, dtype, export, Path(tokenizer_dir))
        else:
            stats = _pack_split(files, tokenizer, cfg, out / f"{split}.bin", dtype, split, export)
        stats["strategies"] = dict(sorted(strategies.items()))
        stats["repo_balance"] = balance
        strategy_totals.update(strategies)
        for key, acc in (("languages", languages), ("node_types", node_types)):
            for name, counts in stats[key].items():
                acc.setdefault(name, Counter()).update(counts)
        if stats["num_windows"] == 0:
            warnings.warn(f"pack: split {split!r} has {stats['num_stream_tokens']} tokens, fewer than one "
                          f"window of seq_len={cfg.seq_len}; {split}.bin is empty", stacklevel=2)
        totals.update(stats["objectives"])
        index["sfim_fallbacks"] += stats["sfim_fallbacks"]
        reasons.update(stats["sfim_fallback_reasons"])
        index["splits"][split] = stats
    index["objectives"] = dict(sorted(totals.items()))
    index["sfim_fallback_reasons"] = dict(sorted(reasons.items()))
    index["languages"] = {k: dict(sorted(v.items())) for k, v in sorted(languages.items())}
    index["node_types"] = {k: dict(v.most_common()) for k, v in sorted(node_types.items())}
    index["strategies"] = dict(sorted(strategy_totals.items()))
    write_json_atomic(out / INDEX_FILE, index, sort_keys=False)
    summary = {**index, "seconds": round(time.perf_counter() - t0, 3)}
    mark_done(out, summary)
    return summary


def _pack_split(pairs: list[tuple[SourceFile, int]], tokenizer: Tokenizer, cfg: PackConfig, path: Path,
                dtype: np.dtype, split: str, export: Path | None) -> dict:
    """Document-level packing of one split (mix.level "document"): one document per (file, repeat)."""
    files = [f for f, _ in pairs]
    writer = StreamWindowWriter(path, cfg.seq_len, dtype, tokenizer.bos_id)
    exporter = AtomicFile(export, "w") if export is not None else None
    stats = _DocumentStats()
    batches = [pairs[i:i + cfg.batch_files] for i in range(0, len(pairs), cfg.batch_files)]
    previous_repo = None
    # Overlap: the tokenizer (Rust, releases the GIL) encodes batch i while Python builds the
    # documents of batch i + 1 (tree-sitter parses). Output order is unchanged, so bytes are too.
    with cleanup_on_error(writer, exporter), ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=len(files), desc=f"pack {split}", unit="file", disable=None) as bar:
        pending = None  # (future of the previous batch's ids, its repo_starts, its files)
        for batch in batches:
            docs = [file_document(f, cfg, repeat) for f, repeat in batch]
            batch = [f for f, _ in batch]
            repo_starts = []  # per file: the first of its repository in the stream
            for f, d in zip(batch, docs):
                repo_starts.append(f.repo != previous_repo)
                previous_repo = f.repo
                stats.add(d)
                if exporter is not None:
                    _export_document(exporter, f, d)
            if pending is not None:
                _add_all(writer, pending[0].result(), *pending[1:])
            pending = (pool.submit(tokenizer.encode_pieces_batch, [d.pieces for d in docs]),
                       repo_starts, batch)
            bar.update(len(batch))
        if pending is not None:
            _add_all(writer, pending[0].result(), *pending[1:])
    writer.close()
    if exporter is not None:
        exporter.commit()
    return stats.summary(writer, cfg, path, files)


class _DocumentStats:
    """Counters of one document-level split: objectives and orders, per language, SFIM node types and
    fallbacks, and the text / special-token pieces behind chars_per_token."""

    def __init__(self) -> None:
        self.objectives: Counter = Counter()  # objective and order (psm / spm) counts
        self.fallback_reasons: Counter = Counter()
        self.languages: dict[str, Counter] = {}  # language -> objective/order counts
        self.node_types: dict[str, Counter] = {}  # language -> SFIM node type counts
        self.num_fallbacks = self.num_text_chars = self.num_special = self.num_special_in_text = 0

    def add(self, d: Document) -> None:
        self.objectives[d.objective] += 1
        lang = self.languages.setdefault(d.language or "unknown", Counter())
        lang[d.objective] += 1
        if d.order:
            self.objectives[d.order] += 1
            lang[d.order] += 1
        if d.node_type:
            self.node_types.setdefault(d.language, Counter())[d.node_type] += 1
        if d.fell_back:
            self.num_fallbacks += 1
            self.fallback_reasons[d.fallback_reason or "unknown"] += 1
        for p in d.pieces:
            if is_special(p):
                self.num_special += 1
            else:
                self.num_text_chars += len(p)
                if "<" in p and _SPECIAL_RE.search(p):
                    self.num_special_in_text += 1

    def summary(self, writer: StreamWindowWriter, cfg: PackConfig, path: Path, files: list[SourceFile]) -> dict:
        """The split's entry in index.json (key order kept: index.json is written unsorted)."""
        text_tokens = writer.num_stream_tokens - self.num_special  # every special piece is one token
        return {
            "file": path.name,
            "num_windows": writer.num_windows,
            "num_tokens": writer.num_windows * cfg.seq_len,
            "num_documents": len(files),
            "num_repos": len({f.repo for f in files}),
            "num_stream_tokens": writer.num_stream_tokens,  # before the last partial window is dropped
            "chars_per_token": round(self.num_text_chars / text_tokens, 4) if text_tokens else 0.0,
            "objectives": dict(sorted(self.objectives.items())),
            "sfim_fallbacks": self.num_fallbacks,
            "sfim_fallback_reasons": dict(sorted(self.fallback_reasons.items())),
            "languages": {k: dict(sorted(v.items())) for k, v in sorted(self.languages.items())},
            "node_types": {k: dict(v.most_common()) for k, v in sorted(self.node_types.items())},
            # text pieces that contain a special-token string: encoded as text here, but a JSONL
            # consumer whose tokenizer parses special tokens in text would read them as tokens
            "text_pieces_with_special_strings": self.num_special_in_text,
            "num_streams": len(writer.streams()),
            "streams": writer.streams(),
        }


def _export_document(exporter: AtomicFile, f: SourceFile, d: Document) -> None:
    """One line of <split>.documents.jsonl, for other trainers."""
    exporter.write(json.dumps({
        "text": d.text(), "repo": f.repo, "path": f.path, "language": d.language,
        "objective": d.objective, "order": d.order, "node_type": d.node_type,
    }, ensure_ascii=False) + "\n")


def _add_all(writer: StreamWindowWriter, docs: list[list[int]], repo_starts: list[bool],
             files: list[SourceFile]) -> None:
    for ids, starts_repo, f in zip(docs, repo_starts, files, strict=True):
        writer.add_document(ids, starts_repo, f.path)


@contextmanager
def cleanup_on_error(writer, exporter: AtomicFile | None) -> Iterator[None]:
    try:
        yield
    except BaseException:
        writer.abort()
        if exporter is not None:
            exporter.abort()
        raise
