"""Pack the fine-tuning files the way pretraining packs them, in the base model's tokenizer and format.

Same path as `lightcoder pack` at context level (pack_context.py): repositories and their file
orderings (repo_order/strategies.py), every file's NTP document in the stream, `examples_for_file` FIM examples
per file (line / partial-line / multi-line / SFIM / random spans, SPM and PSM), each example the
server's prompt for that base model + middle + end token, loss roles in <split>.mask.bin.
What changes is the format (finetune/base.py): the base's own tokenizer (our BPE, aiXcoder's
SentencePiece tokenizer.model with the ☺ rule, or another family's tokenizer.json) and template.

Out: RUN/shards/{index.json, <split>.bin, <split>.mask.bin, DONE}, readable by shards.open_shard.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightcoder.artifacts import clear_done, mark_done, read_done, write_json_atomic
from lightcoder.data.records import SourceFile, read_corpus
from lightcoder.finetune.base import Base
from lightcoder.pack_config import PackConfig
from lightcoder.pack_context import _SplitStats, file_examples, token_roles
from lightcoder.packing import _order_split, cleanup_on_error, file_rng
from lightcoder.shards import INDEX_FILE
from lightcoder.windows import ExampleWindowWriter


def run_finetune_pack(base: Base, cfg: PackConfig, data_dir: Path, out: Path, *, force: bool = False) -> dict:
    """Pack cfg.splits of a split corpus dir into out; returns the DONE summary (skips when DONE)."""
    previous = read_done(out)
    if previous is not None and not force:
        return previous
    if cfg.mix.level != "context":
        raise ValueError("finetune packs at pack.mix.level context (examples cut like the server's prompts)")
    out.mkdir(parents=True, exist_ok=True)
    clear_done(out)
    t0 = time.perf_counter()
    vocab = base.tokenizer.vocab_size
    dtype = np.dtype(np.uint16 if vocab <= 65535 else np.uint32)
    index: dict = {"seq_len": cfg.seq_len, "dtype": dtype.name, "vocab_size": vocab, "splits": {},
                   "template": base.template.name, "doc_start_id": base.doc_start_id,
                   "stop_id": base.tokenizer.eos_id if base.fmt.end_id is None else base.fmt.end_id,
                   "config": _plain(asdict(cfg))}
    for split in cfg.splits:
        pairs, strategies, balance = _order_split(read_corpus(data_dir, split), cfg, split)
        stats = pack_split(pairs, base, cfg, out, split, dtype)
        stats.update(strategies=dict(sorted(strategies.items())), repo_balance=balance)
        index["splits"][split] = stats
    write_json_atomic(out / INDEX_FILE, index, sort_keys=False)
    summary = {**index, "seconds": round(time.perf_counter() - t0, 3)}
    mark_done(out, summary)
    return summary


def pack_split(pairs: list[tuple[SourceFile, int]], base: Base, cfg: PackConfig, out: Path, split: str,
               dtype: np.dtype) -> dict:
    """One split's (file, repeat) pairs -> <split>.bin + <split>.mask.bin; returns its stats."""
    tok = base.tokenizer
    writer = ExampleWindowWriter(out / f"{split}.bin", out / f"{split}.mask.bin", cfg.seq_len, dtype,
                                 base.doc_start_id, tok.eos_id)
    stats = _SplitStats()
    previous_repo = None
    with cleanup_on_error(writer, None), tqdm(total=len(pairs), desc=f"pack {split}", unit="file",
                                              disable=None) as bar:
        for f, repeat in pairs:
            ids = base.ntp_ids(f.path, f.language, f.content)
            counts: Counter = Counter()
            examples = file_examples(f, len(ids), tok, cfg, file_rng(cfg.seed, f, repeat), counts, fmt=base.fmt)
            writer.add_document(ids, f.repo != previous_repo, f.path)
            previous_repo = f.repo
            for example in examples:
                writer.add_example(example)
            stats.add(f, ["", f.content, ""], ids, examples, counts)  # pieces[1:-1]: the text, for chars/token
            writer.pump()
            bar.update()
        writer.close()
    summary = stats.summary(writer, cfg, split, len({f.repo for f, _ in pairs}))
    summary["token_roles"] = token_roles(np.fromfile(out / f"{split}.mask.bin", dtype=np.uint8))
    return summary


def _plain(value):
    import json

    return json.loads(json.dumps(value))
