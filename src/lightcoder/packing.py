"""Pack the corpus into fixed-length token windows (`lightcoder pack`).

In: a finished corpus stage (data/) and tokenizer (tokenizer/). Out, in shards/:

    <split>.bin   flat uint16 (uint32 if vocab > 65535) array of num_windows * seq_len token ids
    index.json    {"seq_len", "dtype", "vocab_size", "splits": {split: {"file", "num_windows",
                  "num_tokens", "num_documents", ...}}, "objectives": counts, "sfim_fallbacks": n,
                  "sfim_fallback_reasons": {reason: n} (fim/mix.py FALLBACK_REASONS)}
    DONE          the same summary plus timings, written last

Per split: repositories in a seeded random order; the files of a repository in `order_files`
order (sampling.py); each file -> `make_document` (NTP / FIM / SFIM, PSM / SPM; fim/mix.py) ->
`encode_pieces`; all documents concatenated into one stream `<s>..</s><s>..</s>..` and cut into
windows of exactly seq_len (the last partial window is dropped). A training example is one window:
inputs = window[:-1], targets = window[1:]. Windows start mid-document, as in aiXcoder (§3.1).

Each file's document depends only on (seed, file): its RNG is seeded from the seed, path and
content hash (`file_rng`), so `file_document(f, cfg)` reproduces any training sample, whatever
the order or the other files. Design cost: a split's file list is held in memory.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightcoder.artifacts import AtomicFile, clear_done, is_done, mark_done, read_done, write_json_atomic
from lightcoder.data.pipeline import read_corpus
from lightcoder.data.records import SPLITS, SourceFile
from lightcoder.fim.mix import Document, MixConfig, make_document
from lightcoder.sampling import STRATEGIES, order_files
from lightcoder.tokenizer.special_tokens import is_special
from lightcoder.tokenizer.tokenizer import Tokenizer

INDEX_FILE = "index.json"
_FLUSH_TOKENS = 1 << 20  # write to disk every ~1M tokens


@dataclass(kw_only=True)
class PackConfig:
    seq_len: int = 512  # tokens per window; the model sees seq_len - 1 inputs per example
    seed: int = 0
    sampling: str = "path"  # file order within a repository: a key of sampling.STRATEGIES
    mix: MixConfig = field(default_factory=MixConfig)
    splits: tuple[str, ...] = ("train", "valid")
    batch_files: int = 256  # files per batched tokenizer call

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        if self.seq_len < 2:
            raise ValueError(f"pack.seq_len must be >= 2 (inputs and targets), got {self.seq_len}")
        if self.sampling not in STRATEGIES:
            raise ValueError(f"pack.sampling {self.sampling!r} is unknown: use one of {', '.join(STRATEGIES)}")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"pack.splits must be distinct names from {SPLITS}, got {self.splits}")
        if self.batch_files < 1:
            raise ValueError(f"pack.batch_files must be >= 1, got {self.batch_files}")


def file_rng(seed: int, f: SourceFile) -> random.Random:
    """The RNG of one file's document, fixed by (seed, path, content hash) and nothing else."""
    digest = f.sha256 or hashlib.sha256(f.content.encode("utf-8")).hexdigest()
    return random.Random(f"{seed}:{f.path}:{digest}")  # str seeds hash with SHA-512: stable everywhere


def file_document(f: SourceFile, cfg: PackConfig) -> Document:
    """The training document of one file, exactly as run_pack builds it."""
    return make_document(f.content, f.path, f.language, cfg.mix, file_rng(cfg.seed, f))


def order_split(files: Iterable[SourceFile], cfg: PackConfig, split: str) -> list[SourceFile]:
    """All files of a split in stream order: repositories shuffled, files ordered per repository."""
    repos: dict[str, list[SourceFile]] = {}
    for f in files:
        repos.setdefault(f.repo, []).append(f)
    names = sorted(repos)
    random.Random(f"{cfg.seed}:{split}:repos").shuffle(names)
    out: list[SourceFile] = []
    for name in names:
        out.extend(order_files(repos[name], cfg.sampling, random.Random(f"{cfg.seed}:order:{name}")))
    return out


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
                   "splits": {}, "objectives": {}, "sfim_fallbacks": 0, "sfim_fallback_reasons": {},
                   "config": json.loads(json.dumps(asdict(cfg)))}  # as read back from JSON
    totals: Counter = Counter()
    reasons: Counter = Counter()
    for split in cfg.splits:
        files = order_split(read_corpus(data_dir, split), cfg, split)
        stats = _pack_split(files, tokenizer, cfg, out / f"{split}.bin", dtype, split)
        if stats["num_windows"] == 0:
            warnings.warn(f"pack: split {split!r} has {stats['num_stream_tokens']} tokens, fewer than one "
                          f"window of seq_len={cfg.seq_len}; {split}.bin is empty", stacklevel=2)
        totals.update(stats["objectives"])
        index["sfim_fallbacks"] += stats["sfim_fallbacks"]
        reasons.update(stats["sfim_fallback_reasons"])
        index["splits"][split] = stats
    index["objectives"] = dict(sorted(totals.items()))
    index["sfim_fallback_reasons"] = dict(sorted(reasons.items()))
    write_json_atomic(out / INDEX_FILE, index, sort_keys=False)
    summary = {**index, "seconds": round(time.perf_counter() - t0, 3)}
    mark_done(out, summary)
    return summary


def _pack_split(files: list[SourceFile], tokenizer: Tokenizer, cfg: PackConfig, path: Path,
                dtype: np.dtype, split: str) -> dict:
    writer = _WindowWriter(path, cfg.seq_len, dtype)
    objectives: Counter = Counter()
    fallback_reasons: Counter = Counter()
    num_fallbacks = num_text_chars = num_special = 0
    batches = [files[i:i + cfg.batch_files] for i in range(0, len(files), cfg.batch_files)]
    # Overlap: the tokenizer (Rust, releases the GIL) encodes batch i while Python builds the
    # documents of batch i + 1 (tree-sitter parses). Output order is unchanged, so bytes are too.
    with _cleanup_on_error(writer), ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=len(files), desc=f"pack {split}", unit="file", disable=None) as bar:
        pending = None
        for batch in batches:
            docs = [file_document(f, cfg) for f in batch]
            for d in docs:
                objectives[d.objective] += 1
                if d.order:
                    objectives[d.order] += 1
                if d.fell_back:
                    num_fallbacks += 1
                    fallback_reasons[d.fallback_reason or "unknown"] += 1
                for p in d.pieces:
                    if is_special(p):
                        num_special += 1
                    else:
                        num_text_chars += len(p)
            if pending is not None:
                writer.add_all(pending.result())
            pending = pool.submit(tokenizer.encode_pieces_batch, [d.pieces for d in docs])
            bar.update(len(batch))
        if pending is not None:
            writer.add_all(pending.result())
    writer.close()
    text_tokens = writer.num_stream_tokens - num_special
    return {
        "file": path.name,
        "num_windows": writer.num_windows,
        "num_tokens": writer.num_windows * cfg.seq_len,
        "num_documents": len(files),
        "num_repos": len({f.repo for f in files}),
        "num_stream_tokens": writer.num_stream_tokens,  # before the last partial window is dropped
        "chars_per_token": round(num_text_chars / text_tokens, 4) if text_tokens else 0.0,
        "objectives": dict(sorted(objectives.items())),
        "sfim_fallbacks": num_fallbacks,
        "sfim_fallback_reasons": dict(sorted(fallback_reasons.items())),
    }


class _WindowWriter:
    """Appends token lists to a temp file next to path in whole windows; close() drops the tail and
    commits the file atomically (artifacts.AtomicFile), abort() deletes it."""

    def __init__(self, path: Path, seq_len: int, dtype: np.dtype) -> None:
        self.path, self.seq_len, self.dtype = path, seq_len, dtype
        self.file = AtomicFile(path, "wb")
        self.pending: list[np.ndarray] = []
        self.num_pending = 0
        self.num_windows = 0
        self.num_stream_tokens = 0

    def add_all(self, docs: list[list[int]]) -> None:
        for ids in docs:
            self.pending.append(np.asarray(ids, dtype=self.dtype))
            self.num_pending += len(ids)
            self.num_stream_tokens += len(ids)
        if self.num_pending >= _FLUSH_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        stream = np.concatenate(self.pending)
        n = len(stream) // self.seq_len
        self.file.write(stream[: n * self.seq_len].tobytes())
        self.num_windows += n
        tail = stream[n * self.seq_len:]
        self.pending, self.num_pending = [tail], len(tail)

    def close(self) -> None:
        self._flush()  # the remaining tail (< seq_len tokens) is dropped
        self.file.commit()

    def abort(self) -> None:
        self.file.abort()


@contextmanager
def _cleanup_on_error(writer: _WindowWriter) -> Iterator[None]:
    try:
        yield
    except BaseException:
        writer.abort()
        raise


def read_index(shards_dir: str | Path) -> dict:
    """index.json of a finished pack stage; ValueError if the stage is not DONE."""
    d = Path(shards_dir)
    if not is_done(d):
        raise ValueError(f"pack stage not finished in {d} (no DONE file): run `lightcoder pack` first")
    return json.loads((d / INDEX_FILE).read_text())


def open_shard(shards_dir: str | Path, split: str) -> np.ndarray:
    """The windows of one split as a read-only memmap of shape (num_windows, seq_len)."""
    index = read_index(shards_dir)
    info = index["splits"].get(split)
    if info is None:
        raise ValueError(f"split {split!r} was not packed in {shards_dir}: packed splits are "
                         f"{sorted(index['splits'])}; rerun `lightcoder pack` with it in pack.splits")
    seq_len, dtype = index["seq_len"], np.dtype(index["dtype"])
    path = Path(shards_dir) / info["file"]
    expected = info["num_windows"] * seq_len * dtype.itemsize
    if not path.exists() or path.stat().st_size != expected:
        size = path.stat().st_size if path.exists() else "missing"
        raise ValueError(f"{path} is {size} bytes, index.json says {expected}: rerun `lightcoder pack --force`")
    if info["num_windows"] == 0:
        return np.zeros((0, seq_len), dtype=dtype)  # np.memmap cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r", shape=(info["num_windows"], seq_len))
