"""Pack the corpus into fixed-length token windows (`lightcoder pack`).

In: a finished corpus stage (data/) and tokenizer (tokenizer/). Out, in shards/:

    <split>.bin   flat uint16 (uint32 if vocab > 65535) array of num_windows * seq_len token ids
    index.json    {"seq_len", "dtype", "vocab_size", "splits": {split: {"file", "num_windows",
                  "num_tokens", "num_documents", "streams", "objectives", "languages",
                  "node_types", "strategies", ...}}, "objectives": counts, "sfim_fallbacks": n,
                  "sfim_fallback_reasons": {reason: n} (fim/mix.py FALLBACK_REASONS), "languages",
                  "node_types", "strategies" (totals over splits)}
    <split>.documents.jsonl   (pack.export_jsonl) one constructed document per line, for other
                  trainers: {"text", "repo", "path", "language", "objective", "order", "node_type"}
    DONE          the same summary plus timings, written last

Per split: repositories in a seeded random order; the files of a repository ordered by one
strategy drawn per repository from pack.sampling_weights (sampling.py: content / path / dependency
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightcoder.artifacts import AtomicFile, clear_done, is_done, mark_done, read_done, write_json_atomic
from lightcoder.data.pipeline import read_corpus
from lightcoder.data.records import SPLITS, SourceFile
from lightcoder.fim.mix import Document, MixConfig, make_document
from lightcoder.sampling import DEFAULT_WEIGHTS, STRATEGIES, choose_strategy, order_files
from lightcoder.tokenizer.special_tokens import SPECIAL_TOKENS, is_special
from lightcoder.tokenizer.tokenizer import Tokenizer

INDEX_FILE = "index.json"
MIX = "mix"  # pack.sampling value: draw a strategy per repository from pack.sampling_weights
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
_FLUSH_TOKENS = 1 << 20  # write to disk every ~1M tokens


@dataclass(kw_only=True)
class PackConfig:
    seq_len: int = 512  # tokens per window; the model sees seq_len - 1 inputs per example
    seed: int = 0
    sampling: str = MIX  # file order within a repository: "mix" or a key of sampling.STRATEGIES
    sampling_weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))  # for "mix"
    mix: MixConfig = field(default_factory=MixConfig)
    splits: tuple[str, ...] = ("train", "valid")
    batch_files: int = 256  # files per batched tokenizer call
    export_jsonl: bool = False  # also write <split>.documents.jsonl (documents as text)

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        if self.seq_len < 2:
            raise ValueError(f"pack.seq_len must be >= 2 (inputs and targets), got {self.seq_len}")
        if self.sampling != MIX and self.sampling not in STRATEGIES:
            raise ValueError(f"pack.sampling {self.sampling!r} is unknown: use {MIX!r} (a per-repository draw "
                             f"from pack.sampling_weights) or one of {', '.join(STRATEGIES)}")
        try:
            choose_strategy(self.sampling_weights, random.Random(0))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"pack.sampling_weights: {exc} (e.g. --pack.sampling_weights "
                             f"'{json.dumps(DEFAULT_WEIGHTS)}')") from None
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
    return _order_split(files, cfg, split)[0]


def _order_split(files: Iterable[SourceFile], cfg: PackConfig, split: str) -> tuple[list[SourceFile], Counter]:
    """(files in stream order, repositories per ordering strategy)."""
    repos: dict[str, list[SourceFile]] = {}
    for f in files:
        repos.setdefault(f.repo, []).append(f)
    names = sorted(repos)
    random.Random(f"{cfg.seed}:{split}:repos").shuffle(names)
    out: list[SourceFile] = []
    strategies: Counter = Counter()
    for name in names:
        rng = random.Random(f"{cfg.seed}:order:{name}")
        strategy = choose_strategy(cfg.sampling_weights, rng) if cfg.sampling == MIX else cfg.sampling
        strategies[strategy] += 1
        out.extend(order_files(repos[name], strategy, rng))
    return out, strategies


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
    languages: dict[str, Counter] = {}
    node_types: dict[str, Counter] = {}
    strategy_totals: Counter = Counter()
    for split in cfg.splits:
        files, strategies = _order_split(read_corpus(data_dir, split), cfg, split)
        export = out / f"{split}.documents.jsonl" if cfg.export_jsonl else None
        stats = _pack_split(files, tokenizer, cfg, out / f"{split}.bin", dtype, split, export)
        stats["strategies"] = dict(sorted(strategies.items()))
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


def _pack_split(files: list[SourceFile], tokenizer: Tokenizer, cfg: PackConfig, path: Path,
                dtype: np.dtype, split: str, export: Path | None) -> dict:
    writer = _WindowWriter(path, cfg.seq_len, dtype, tokenizer.bos_id)
    exporter = AtomicFile(export, "w") if export is not None else None
    objectives: Counter = Counter()
    fallback_reasons: Counter = Counter()
    languages: dict[str, Counter] = {}  # language -> objective/order counts
    node_types: dict[str, Counter] = {}  # language -> SFIM node type counts
    num_fallbacks = num_text_chars = num_special = num_special_in_text = 0
    batches = [files[i:i + cfg.batch_files] for i in range(0, len(files), cfg.batch_files)]
    previous_repo = None
    # Overlap: the tokenizer (Rust, releases the GIL) encodes batch i while Python builds the
    # documents of batch i + 1 (tree-sitter parses). Output order is unchanged, so bytes are too.
    with _cleanup_on_error(writer, exporter), ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=len(files), desc=f"pack {split}", unit="file", disable=None) as bar:
        pending = None
        for batch in batches:
            docs = [file_document(f, cfg) for f in batch]
            repo_starts = []
            for f, d in zip(batch, docs):
                repo_starts.append(f.repo != previous_repo)
                previous_repo = f.repo
                objectives[d.objective] += 1
                lang = languages.setdefault(d.language or "unknown", Counter())
                lang[d.objective] += 1
                if d.order:
                    objectives[d.order] += 1
                    lang[d.order] += 1
                if d.node_type:
                    node_types.setdefault(d.language, Counter())[d.node_type] += 1
                if d.fell_back:
                    num_fallbacks += 1
                    fallback_reasons[d.fallback_reason or "unknown"] += 1
                for p in d.pieces:
                    if is_special(p):
                        num_special += 1
                    else:
                        num_text_chars += len(p)
                        if "<" in p and _SPECIAL_RE.search(p):
                            num_special_in_text += 1
                if exporter is not None:
                    exporter.write(json.dumps({
                        "text": d.text(), "repo": f.repo, "path": f.path, "language": d.language,
                        "objective": d.objective, "order": d.order, "node_type": d.node_type,
                    }, ensure_ascii=False) + "\n")
            if pending is not None:
                writer.add_all(pending[0].result(), *pending[1:])
            pending = (pool.submit(tokenizer.encode_pieces_batch, [d.pieces for d in docs]),
                       repo_starts, batch)
            bar.update(len(batch))
        if pending is not None:
            writer.add_all(pending[0].result(), *pending[1:])
    writer.close()
    if exporter is not None:
        exporter.commit()
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
        "languages": {k: dict(sorted(v.items())) for k, v in sorted(languages.items())},
        "node_types": {k: dict(v.most_common()) for k, v in sorted(node_types.items())},
        # text pieces that contain a special-token string: encoded as text here, but a JSONL
        # consumer whose tokenizer parses special tokens in text would read them as tokens
        "text_pieces_with_special_strings": num_special_in_text,
        "num_streams": len(writer.streams()),
        "streams": writer.streams(),
    }


class _WindowWriter:
    """Appends token lists to a temp file next to path in whole windows; close() drops the tail and
    commits the file atomically (artifacts.AtomicFile), abort() deletes it."""

    def __init__(self, path: Path, seq_len: int, dtype: np.dtype, bos_id: int) -> None:
        self.path, self.seq_len, self.dtype, self.bos_id = path, seq_len, dtype, bos_id
        self.file = AtomicFile(path, "wb")
        self.pending: list[np.ndarray] = []
        self.num_pending = 0
        self.num_windows = 0
        self.num_stream_tokens = 0
        self.repo_offsets: list[int] = []  # stream offset of each repository's first token

    def add_all(self, docs: list[list[int]], repo_starts: list[bool], files: list[SourceFile]) -> None:
        """Append encoded documents; repo_starts[i] marks the first document of a repository."""
        for ids, starts_repo, f in zip(docs, repo_starts, files, strict=True):
            if not ids or ids[0] != self.bos_id or ids.count(self.bos_id) != 1:
                raise ValueError(
                    f"pack: the document of {f.path} does not hold exactly one <s> at its start: the "
                    "tokenizer turned special-token text inside the code into special ids; use a "
                    "lightcoder Tokenizer (it encodes text with special-token parsing disabled)")
            if starts_repo:
                self.repo_offsets.append(self.num_stream_tokens)
            self.pending.append(np.asarray(ids, dtype=self.dtype))
            self.num_pending += len(ids)
            self.num_stream_tokens += len(ids)
        if self.num_pending >= _FLUSH_TOKENS:
            self._flush()

    def streams(self) -> list[list[int]]:
        """[first_window, num_windows] per stream: window w goes to the repository owning token w * seq_len."""
        firsts = sorted({-(-off // self.seq_len) for off in self.repo_offsets} | {0})
        firsts = [w for w in firsts if w < self.num_windows]
        ends = firsts[1:] + [self.num_windows]
        return [[a, b - a] for a, b in zip(firsts, ends)]

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
def _cleanup_on_error(writer: _WindowWriter, exporter: AtomicFile | None) -> Iterator[None]:
    try:
        yield
    except BaseException:
        writer.abort()
        if exporter is not None:
            exporter.abort()
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


def format_stats(summary: dict) -> str:
    """`lightcoder pack --stats`: objective / language / node-type / ordering distribution of a pack.

    Example (abridged):
        split train: 1519 documents, 115 repositories in 98 streams, 14682 windows of 512 tokens
          objectives  ntp 32.4%  fim 12.4%  sfim 55.2%   (psm 48.8% / spm 51.2% of FIM)
          language     docs   ntp   fim  sfim   top SFIM node types
          Python       1519  32%   12%   55%   block 14%, call 9%, ...
    """
    lines = []
    for split, info in summary["splits"].items():
        docs = info["num_documents"]
        lines.append(f"split {split}: {docs} documents, {info.get('num_repos', '?')} repositories in "
                     f"{info.get('num_streams', '?')} streams, {info['num_windows']} windows of "
                     f"{summary['seq_len']} tokens ({info.get('chars_per_token', 0)} chars/token)")
        obj = info["objectives"]
        fim = obj.get("psm", 0) + obj.get("spm", 0)
        shares = "  ".join(f"{k} {_pct(obj.get(k, 0), docs)}" for k in ("ntp", "fim", "sfim"))
        lines.append(f"  objectives  {shares}   (psm {_pct(obj.get('psm', 0), fim)} / spm "
                     f"{_pct(obj.get('spm', 0), fim)} of FIM)")
        if info.get("sfim_fallbacks"):
            reasons = ", ".join(f"{k} {v}" for k, v in info["sfim_fallback_reasons"].items())
            lines.append(f"  SFIM fell back to random FIM for {info['sfim_fallbacks']} documents ({reasons})")
        if info.get("strategies"):
            repos = sum(info["strategies"].values())
            lines.append("  file order  " + "  ".join(f"{k} {_pct(v, repos)}" for k, v in info["strategies"].items())
                         + " of repositories")
        if info.get("languages"):
            lines.append(f"  {'language':<12} {'docs':>6} {'ntp':>5} {'fim':>5} {'sfim':>5}   top SFIM node types")
            for lang, counts in sorted(info["languages"].items(), key=lambda kv: -sum(
                    kv[1].get(k, 0) for k in ("ntp", "fim", "sfim"))):
                n = sum(counts.get(k, 0) for k in ("ntp", "fim", "sfim"))
                types = info.get("node_types", {}).get(lang, {})
                total = sum(types.values())
                top = ", ".join(f"{t} {_pct(c, total)}" for t, c in list(types.items())[:5])
                lines.append(f"  {lang:<12} {n:>6} " + " ".join(
                    f"{_pct(counts.get(k, 0), n):>5}" for k in ("ntp", "fim", "sfim")) + f"   {top}")
        if info.get("text_pieces_with_special_strings"):
            lines.append(f"  {info['text_pieces_with_special_strings']} text pieces contain special-token "
                         "strings (kept as text; see docs/training-data.md before exporting)")
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def summary_line(summary: dict) -> str:
    """One line for the pack stage's log: documents, objectives, languages, windows.

    Example: "pack: 1637 documents (ntp 33%, fim 13%, sfim 54%; Python 100%), 15510 windows in 140 streams"
    """
    obj = summary.get("objectives", {})
    docs = sum(obj.get(k, 0) for k in ("ntp", "fim", "sfim"))
    langs = {k: sum(v.get(o, 0) for o in ("ntp", "fim", "sfim")) for k, v in summary.get("languages", {}).items()}
    top = ", ".join(f"{k} {_pct(v, docs)}" for k, v in sorted(langs.items(), key=lambda kv: -kv[1])[:4])
    splits = summary.get("splits", {}).values()
    windows = sum(s.get("num_windows", 0) for s in splits)
    streams = sum(s.get("num_streams", 0) for s in splits)
    mix = ", ".join(f"{k} {_pct(obj.get(k, 0), docs)}" for k in ("ntp", "fim", "sfim"))
    return f"pack: {docs} documents ({mix}{'; ' + top if top else ''}), {windows} windows in {streams} streams"
