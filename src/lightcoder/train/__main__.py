"""Train on a packed shards dir directly, one process or many: `python -m lightcoder.train`.

`lightcoder train --out RUN` trains inside a run dir (after the data/tokenizer/pack stages); this entry
point takes any `lightcoder pack` output, so a cluster job needs only the shards:

    python -m lightcoder.train --shards RUN/shards --tokenizer RUN/tokenizer --out OUT --preset lc-small \\
        --train.max_steps 1000 --train.batch_size 64
    torchrun --nproc_per_node 8 -m lightcoder.train --shards ... --out OUT --train.parallel fsdp
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 -m lightcoder.train ...

model.vocab_size defaults to the tokenizer's (or the shards' index) vocabulary and model.max_seq_len to
the window length; `--model.FIELD` / `--train.FIELD` override any field (unknown keys are errors, before
any compute). Rank 0 prints the run summary as JSON on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from lightcoder.model.config import PRESETS, ModelConfig, get_preset
from lightcoder.train.config import TrainConfig


@dataclasses.dataclass(kw_only=True)
class _Sections:  # the two config areas `--model.X` / `--train.X` address
    model: ModelConfig
    train: TrainConfig


def main(argv: list[str] | None = None) -> int:
    from lightcoder.overrides import apply_overrides, parse_override_args
    from lightcoder.shards import read_index
    from lightcoder.train.distributed import env_rank, shutdown_distributed
    from lightcoder.train.inputs import tokenizer_vocab_size
    from lightcoder.train.loop import train

    parser = argparse.ArgumentParser(prog="python -m lightcoder.train", description=__doc__.split("\n")[0])
    parser.add_argument("--shards", required=True, help="a `lightcoder pack` output dir")
    parser.add_argument("--out", required=True, help="run dir: ckpt/, metrics.jsonl, tensorboard/, loss.png")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir (copied into checkpoints, vocab checked)")
    parser.add_argument("--preset", default="lc-quickstart", help=f"model preset, one of {sorted(PRESETS)}")
    args, rest = parser.parse_known_args(argv)
    if args.preset not in PRESETS:
        parser.error(f"unknown model preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    overrides = parse_override_args(rest)
    index = read_index(args.shards)
    vocab = (tokenizer_vocab_size(args.tokenizer) if args.tokenizer else None) or index.get("vocab_size")
    defaults = {"max_seq_len": index["seq_len"] - 1, **({"vocab_size": vocab} if vocab else {})}
    sections = _Sections(model=get_preset(args.preset, **defaults), train=TrainConfig())
    apply_overrides(sections, overrides)
    summary = train(sections.train, sections.model, shards_dir=args.shards, tokenizer_dir=args.tokenizer,
                    out_dir=Path(args.out))
    shutdown_distributed()
    if env_rank() == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
