"""Context-level packing of one split (pack.mix.level "context"): NTP documents + FIM examples.

Every (file, repeat) of the split, in stream order, gives:
- its NTP document `<s> H+code </s>`, appended to the split's token stream;
- `examples_for_file` FIM examples (fim/context.py): a span kind drawn from mix.span_weights, a span
  of that kind in the file, and the server's prompt around it + middle + `</s>`.
windows.ExampleWindowWriter lays them out: each example ends a window, stream tokens fill the rest.

Bad input is counted, never a crash: a kind with no candidate in a file (no code lines, no parse, a
syntax error, no structure that fits) falls back to a random span and counts the reason; a middle
longer than the token limit is redrawn, and after MAX_DRAWS draws the example is dropped and counted;
a file shorter than a window is counted (its prompt is the whole file).

Writes <split>.bin and <split>.mask.bin (uint8 target roles) under the pack dir; returns the split's
stats for index.json (see `pack --stats`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightcoder.artifacts import AtomicFile
from lightcoder.data.records import SourceFile
from lightcoder.fim.context import (
    Example, ExampleFormat, LineIndex, build_example, choose_kind, draw_span, end_of_file_span, examples_for_file,
)
from lightcoder.fim.spans import RULES, ParsedSource, node_buckets, parse_source
from lightcoder.fim.transforms import ntp_document
from lightcoder.pack_config import PackConfig
from lightcoder.packing import cleanup_on_error, file_rng
from lightcoder.tokenizer.header import file_header
from lightcoder.windows import PROMPT, TARGET, ExampleWindowWriter

MAX_DRAWS = 4  # span draws per example before it is dropped
CHARS_PER_TOKEN_BOUND = 4.5  # span draws are capped at this many chars per allowed middle token
SERVER_STICKY_LINES = 16  # `lightcoder serve --sticky-lines` default (tests/pack check they agree)


class _FileSpans:
    """A file's line index and (lazily, once) its parse for SFIM, with why SFIM cannot use it."""

    def __init__(self, f: SourceFile, partial_parse: bool) -> None:
        self.text, self.language, self.partial_parse = f.content, f.language, partial_parse
        self.lines = LineIndex(f.content)
        self._parsed: ParsedSource | None = None
        self.buckets: dict | None = None  # fim/spans.node_buckets of the parse
        self.sfim_reason: str | None = None  # None = not parsed yet; "" = SFIM usable

    def parsed(self) -> ParsedSource | None:
        if self.sfim_reason is None:
            self.sfim_reason = ""
            if self.language not in RULES:
                self.sfim_reason = "no_rules"
            else:
                self._parsed = parse_source(self.text, self.language)
                if self._parsed is None:
                    self.sfim_reason = "no_grammar"
                elif self._parsed.has_error and not self.partial_parse:
                    self.sfim_reason, self._parsed = "syntax_error", None
                else:
                    self.buckets = node_buckets(self._parsed)
        return self._parsed


def file_examples(f: SourceFile, ntp_tokens: int, tokenizer, cfg: PackConfig, rng: random.Random,
                  counts: Counter, fmt: ExampleFormat | None = None) -> list[Example]:
    """The FIM examples of one file (count from its NTP length), drawing from rng; counts bad input.
    fmt: another base model's layout (lightcoder finetune); modes it lacks fall back to its default."""
    modes = fmt.template.modes if fmt is not None and fmt.template is not None else ("spm", "psm")
    mix, limit = cfg.mix, cfg.middle_token_limit
    max_chars = min(mix.max_middle_chars, int(limit * CHARS_PER_TOKEN_BOUND))
    spans = _FileSpans(f, mix.sfim_partial_parse)
    longest = cfg.seq_len - 1  # a prompt budget above what the window leaves is cut by build_example
    shortest = min(mix.min_prompt_tokens or longest, longest)
    out = []
    for _ in range(examples_for_file(ntp_tokens, cfg.seq_len, mix.ntp_rate, rng, mean_budget(shortest, longest))):
        kind = choose_kind(mix.span_weights, rng)
        mode = "spm" if rng.random() < mix.spm_rate else "psm"
        mode = mode if mode in modes else modes[0]
        sticky = SERVER_STICKY_LINES if rng.random() < mix.sticky_rate else 0
        prompt_tokens = round(math.exp(rng.uniform(math.log(shortest), math.log(longest))))  # log-uniform
        end_of_file = mix.end_of_file_rate > 0 and rng.random() < mix.end_of_file_rate  # rate 0 draws nothing
        example = None
        for _ in range(MAX_DRAWS):
            parsed = spans.parsed() if kind == "sfim" else None
            span, node_type = draw_span(kind, f.content, spans.lines, parsed, rng, max_chars=max_chars,
                                        whole_node_rate=mix.whole_node_rate, buckets=spans.buckets,
                                        line_headers=mix.line_span_headers)
            if span is None:
                counts[f"fallback:{kind}:{spans.sfim_reason or 'no_span'}" if kind == "sfim"
                       else f"fallback:{kind}:no_span"] += 1
                kind = "random"
                continue
            text = f.content
            if end_of_file:  # the file ends with the definition the span is in: an empty suffix
                span = end_of_file_span(spans.lines, span)
                text = text[: span.end]
            try:
                example = build_example(tokenizer, text, f.path, span, seq_len=cfg.seq_len, mode=mode,
                                        sticky_lines=sticky, max_middle_tokens=limit, node_type=node_type,
                                        prompt_tokens=prompt_tokens, fmt=fmt)
            except ValueError:  # the budget cannot hold the special tokens and this path's header
                if prompt_tokens >= longest:  # nor can the whole window: no example fits this file
                    counts["dropped:no_room"] += 1
                    return out
                prompt_tokens = min(longest, 2 * prompt_tokens)
                continue
            if example is not None:
                break
            counts["redraw:middle_too_long"] += 1
        if example is None:
            counts["dropped:middle_too_long"] += 1
            continue
        counts["end_of_file"] += end_of_file
        out.append(example)
    if out and ntp_tokens < cfg.seq_len:
        counts["short_files"] += 1
    return out


def mean_budget(shortest: int, longest: int) -> float:
    """Mean of a log-uniform draw in [shortest, longest]. Example: mean_budget(32, 511) -> ~173"""
    if shortest >= longest:
        return float(longest)
    return (longest - shortest) / math.log(longest / shortest)


def pack_split_context(pairs: list[tuple[SourceFile, int]], tokenizer, cfg: PackConfig, out_dir: Path,
                       split: str, dtype: np.dtype, export: Path | None, tokenizer_dir: Path | None = None) -> dict:
    """Pack one split's (file, repeat) pairs into <split>.bin + <split>.mask.bin; returns its stats.

    With pack.workers > 1 (and tokenizer_dir), batches of files are tokenized and cut into examples
    in worker processes; results are consumed in order, so the files written are the same.
    """
    writer = ExampleWindowWriter(out_dir / f"{split}.bin", out_dir / f"{split}.mask.bin", cfg.seq_len, dtype,
                                 tokenizer.bos_id, tokenizer.eos_id)
    exporter = AtomicFile(export, "w") if export is not None else None
    stats = _SplitStats()
    previous_repo = None
    batches = [pairs[i:i + cfg.batch_files] for i in range(0, len(pairs), cfg.batch_files)]
    with cleanup_on_error(writer, exporter), _batch_runner(cfg, tokenizer, tokenizer_dir, len(batches)) as run, \
            tqdm(total=len(pairs), desc=f"pack {split}", unit="file", disable=None) as bar:
        for batch, results in zip(batches, run(batches)):
            for (f, _), (pieces, ids, examples, counts) in zip(batch, results):
                writer.add_document(ids, f.repo != previous_repo, f.path)
                previous_repo = f.repo
                for example in examples:
                    writer.add_example(example)
                stats.add(f, pieces, ids, examples, counts)
                if exporter is not None:
                    _export(exporter, tokenizer, f, pieces, examples)
                writer.pump()
            bar.update(len(batch))
        writer.close()
    if exporter is not None:
        exporter.commit()
    summary = stats.summary(writer, cfg, split, len({f.repo for f, _ in pairs}))
    summary["token_roles"] = token_roles(np.fromfile(out_dir / f"{split}.mask.bin", dtype=np.uint8))
    return summary


def batch_items(batch: list[tuple[SourceFile, int]], tokenizer, cfg: PackConfig) -> list[tuple]:
    """(NTP pieces, NTP ids, examples, counts) per (file, repeat) of one batch."""
    docs = [ntp_document(file_header(f.path, language=f.language), f.content) for f, _ in batch]
    out = []
    for (f, repeat), pieces, ids in zip(batch, docs, tokenizer.encode_pieces_batch(docs)):
        counts: Counter = Counter()
        examples = file_examples(f, len(ids), tokenizer, cfg, file_rng(cfg.seed, f, repeat), counts)
        out.append((pieces, ids, examples, counts))
    return out


@contextmanager
def _batch_runner(cfg: PackConfig, tokenizer, tokenizer_dir: Path | None, num_batches: int):
    """A function batches -> iterator of batch_items results, in order: in this process, or a pool."""
    workers = min(cfg.num_workers, num_batches)
    if workers <= 1 or tokenizer_dir is None:
        yield lambda batches: (batch_items(b, tokenizer, cfg) for b in batches)
        return
    # spawn, not fork: a forked HF tokenizer may deadlock; each worker loads its own
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (str(tokenizer_dir), cfg)) as pool:
        yield lambda batches: pool.imap(_worker_items, batches)


_WORKER: dict = {}


def _init_worker(tokenizer_dir: str, cfg: PackConfig) -> None:
    from lightcoder.tokenizer.tokenizer import Tokenizer

    _WORKER.update(tokenizer=Tokenizer.load(tokenizer_dir), cfg=cfg)


def _worker_items(batch: list[tuple[SourceFile, int]]) -> list[tuple]:
    return batch_items(batch, _WORKER["tokenizer"], _WORKER["cfg"])


def _export(exporter: AtomicFile, tokenizer, f: SourceFile, pieces: list[str], examples: list[Example]) -> None:
    """JSONL for other trainers: the NTP document as text, then each example with its prompt decoded."""
    base = {"repo": f.repo, "path": f.path, "language": f.language}
    exporter.write(json.dumps({"text": "".join(pieces), **base, "objective": "ntp"}, ensure_ascii=False) + "\n")
    for e in examples:
        exporter.write(json.dumps({
            "text": tokenizer.decode(e.ids), "prompt": tokenizer.decode(e.ids[:e.prompt_len]),
            "middle": tokenizer.decode(e.ids[e.prompt_len:-1]), **base, "objective": "fim", "kind": e.kind,
            "order": e.mode, "node_type": e.node_type}, ensure_ascii=False) + "\n")


class _SplitStats:
    """Counters of one split: documents, examples per kind / mode / language / node type, middle sizes."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()  # fallbacks, redraws, drops, short files
        self.kinds: Counter = Counter()
        self.modes: Counter = Counter()
        self.languages: dict[str, Counter] = {}
        self.node_types: dict[str, Counter] = {}
        self.middle_tokens: dict[str, list[int]] = {}
        self.middle_chars: dict[str, list[int]] = {}
        self.prompt_tokens = 0
        self.num_documents = 0
        self.text_chars = self.text_tokens = 0

    def add(self, f: SourceFile, pieces: list[str], ids: list[int], examples: list[Example], counts: Counter) -> None:
        self.counts.update(counts)
        self.num_documents += 1
        self.text_chars += sum(len(p) for p in pieces[1:-1])
        self.text_tokens += len(ids) - 2
        lang = self.languages.setdefault(f.language or "unknown", Counter())
        lang["ntp"] += 1
        for e in examples:
            self.kinds[e.kind] += 1
            self.modes[e.mode] += 1
            lang["fim_examples"] += 1
            lang[e.kind] += 1
            if e.node_type:
                self.node_types.setdefault(f.language, Counter())[e.node_type] += 1
            self.middle_tokens.setdefault(e.kind, []).append(len(e.ids) - e.prompt_len - 1)
            self.middle_chars.setdefault(e.kind, []).append(e.middle_chars)
            self.prompt_tokens += e.prompt_len

    def summary(self, writer: ExampleWindowWriter, cfg: PackConfig, split: str, num_repos: int) -> dict:
        examples = sum(self.kinds.values())
        fallbacks = {k.split(":", 1)[1]: v for k, v in self.counts.items() if k.startswith("fallback:")}
        return {
            "file": f"{split}.bin", "mask_file": f"{split}.mask.bin", "level": "context",
            "num_windows": writer.num_windows, "num_tokens": writer.num_windows * cfg.seq_len,
            "num_documents": self.num_documents, "num_repos": num_repos,
            "num_stream_tokens": writer.num_stream_tokens, "num_examples": examples,
            "padding_tokens": writer.num_padding,
            "chars_per_token": round(self.text_chars / self.text_tokens, 4) if self.text_tokens else 0.0,
            "objectives": {"ntp": self.num_documents, "fim_examples": examples, **dict(sorted(self.modes.items()))},
            "span_kinds": dict(sorted(self.kinds.items(), key=lambda kv: -kv[1])),
            "middles": {k: _sizes(self.middle_tokens[k], self.middle_chars[k]) for k in self.kinds},
            "mean_prompt_tokens": round(self.prompt_tokens / examples, 1) if examples else 0.0,
            "end_of_file_examples": self.counts["end_of_file"],
            "fallbacks": dict(sorted(fallbacks.items())),
            "sfim_fallbacks": sum(v for k, v in fallbacks.items() if k.startswith("sfim:")),
            "sfim_fallback_reasons": {k.split(":", 1)[1]: v for k, v in sorted(fallbacks.items()) if k.startswith("sfim:")},
            "redrawn_middles": self.counts["redraw:middle_too_long"],
            "dropped_examples": {k.split(":", 1)[1]: v for k, v in sorted(self.counts.items()) if k.startswith("dropped:")},
            "short_files": self.counts["short_files"],
            "languages": {k: dict(sorted(v.items())) for k, v in sorted(self.languages.items())},
            "node_types": {k: dict(v.most_common()) for k, v in sorted(self.node_types.items())},
            "num_streams": len(writer.streams()), "streams": writer.streams(),
        }


def _sizes(tokens: list[int], chars: list[int]) -> dict:
    """{"n", "mean_chars", "p50_tokens", "p90_tokens"} of one span kind's middles."""
    t = np.asarray(tokens)
    return {"n": len(tokens), "mean_chars": round(float(np.mean(chars)), 1),
            "p50_tokens": int(np.percentile(t, 50)), "p90_tokens": int(np.percentile(t, 90))}


def token_roles(masks: np.ndarray) -> dict[str, float]:
    """Shares of a mask array's tokens by role: loss targets, FIM prompt, no loss (padding, <s>)."""
    n = max(1, masks.size)
    return {"target": round(float((masks == TARGET).sum()) / n, 4),
            "prompt": round(float((masks == PROMPT).sum()) / n, 4),
            "no_loss": round(float((masks < PROMPT).sum()) / n, 4)}
