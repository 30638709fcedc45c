"""What a training run reads from a finished `lightcoder pack` dir: the train/valid windows checked
against the model and tokenizer, the repository streams, the stop token the loss may weigh, and the
model config a run trains (its tokenizer's vocabulary, the packed window).

These read index.json and the shards (shards.py), never the packer, so the loop imports no packing code.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from lightcoder.overrides import ConfigError
from lightcoder.shards import open_shard, read_index
from lightcoder.train.config import TrainConfig


def open_splits(shards_dir: str | Path, model_cfg, tokenizer_dir: str | Path | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(train windows, valid windows or None) of a finished `lightcoder pack` dir, checked against the
    model and, when given, the tokenizer the run uses."""
    index = read_index(shards_dir)  # ValueError when the pack stage is not finished
    if tokenizer_dir is not None and index.get("vocab_size") is not None:
        vocab = tokenizer_vocab_size(tokenizer_dir)
        if vocab is not None and vocab != index["vocab_size"]:
            raise ValueError(f"{shards_dir} was packed with a vocabulary of {index['vocab_size']} tokens but the "
                             f"tokenizer in {tokenizer_dir} has {vocab}: the shards belong to another tokenizer; "
                             "re-run `lightcoder pack` (or pass the tokenizer the shards were made with)")
    if index.get("vocab_size", 0) > model_cfg.vocab_size:
        raise ValueError(f"the shards use a vocabulary of {index['vocab_size']} tokens but model.vocab_size is "
                         f"{model_cfg.vocab_size}; set model.vocab_size to the tokenizer's vocab size")
    if index["seq_len"] - 1 > model_cfg.max_seq_len:
        raise ValueError(f"shard windows of {index['seq_len']} tokens need model.max_seq_len >= "
                         f"{index['seq_len'] - 1}, got {model_cfg.max_seq_len}")
    if "train" not in index.get("splits", {}):
        raise ValueError(f"{shards_dir}/index.json has no train split; re-run `lightcoder pack`")
    train_windows = open_shard(shards_dir, "train")
    valid = index["splits"].get("valid", {})
    valid_windows = open_shard(shards_dir, "valid") if valid.get("num_windows", 0) > 0 else None
    if valid_windows is None:
        warnings.warn(f"{shards_dir} has no valid windows: no validation loss will be reported", stacklevel=2)
    return train_windows, valid_windows


def stop_weight_of(cfg: TrainConfig, shards_dir: str | Path, tokenizer_dir: str | Path | None
                   ) -> tuple[int, float] | None:
    """(stop token id, train.stop_loss_weight) for optimizer_step, or None when the weight is 1. The id
    is the one the packer ended FIM middles with (index.json "stop_id"), else the tokenizer's eos."""
    if cfg.stop_loss_weight == 1.0:
        return None
    stop_id = read_index(shards_dir).get("stop_id")
    if stop_id is None and tokenizer_dir is not None and has_tokenizer(tokenizer_dir):
        from lightcoder.tokenizer.backends import load_tokenizer

        stop_id = load_tokenizer(tokenizer_dir).eos_id
    if stop_id is None:
        raise ValueError(f"train.stop_loss_weight={cfg.stop_loss_weight} needs the stop token id: {shards_dir}/"
                         "index.json has no stop_id and no tokenizer was given; re-run `lightcoder pack --force` "
                         "or set train.stop_loss_weight=1")
    return int(stop_id), float(cfg.stop_loss_weight)


def train_streams(shards_dir: str | Path) -> list | None:
    """The train split's `streams` (runs of consecutive windows of one repository) from index.json, or
    None with a warning when the packer did not record them (windows are then shuffled one by one)."""
    streams = read_index(shards_dir)["splits"]["train"].get("streams")
    if not streams:
        warnings.warn(f"train.stream_order is set but {shards_dir}/index.json has no train streams; "
                      "shuffling windows independently (re-pack with a lightcoder that records streams)",
                      stacklevel=2)
        return None
    return streams


def tokenizer_vocab_size(tokenizer_dir: str | Path) -> int | None:
    """The vocabulary size of a `lightcoder tokenizer` dir (None when there is no tokenizer to read)."""
    if not has_tokenizer(tokenizer_dir):
        return None
    from lightcoder.tokenizer.backends import load_tokenizer

    return load_tokenizer(tokenizer_dir).vocab_size  # ours, aiXcoder's tokenizer.model or another family's


def has_tokenizer(tokenizer_dir: str | Path) -> bool:
    """Whether the dir holds a tokenizer load_tokenizer reads (ours, or a SentencePiece tokenizer.model)."""
    return (Path(tokenizer_dir) / "tokenizer.json").is_file() or (Path(tokenizer_dir) / "tokenizer.model").is_file()


def model_config_for_run(cfg, run_dir: Path):
    """cfg.model (a RunConfig's) with vocab_size taken from the run's tokenizer and max_seq_len the packed
    window, checked against the packing."""
    from lightcoder.tokenizer.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(run_dir / "tokenizer")
    if cfg.model.max_seq_len < cfg.pack.seq_len:
        raise ConfigError(f"model.max_seq_len ({cfg.model.max_seq_len}) is shorter than pack.seq_len "
                          f"({cfg.pack.seq_len}): raise --model.max_seq_len, or repack shorter windows with "
                          f"`lightcoder pack --out {run_dir} --pack.seq_len {cfg.model.max_seq_len} --force`")
    # The checkpoint records the context it was trained on (max_position_embeddings), so prompts
    # are budgeted to it: positions past the training window are untrained for RoPE.
    return dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size, max_seq_len=cfg.pack.seq_len)
