"""Read a finished pack stage (shards/): its index.json and the windows and masks of one split.

The format is written by packing.py (`lightcoder pack`) and finetune/pack.py; training, speed
runs and LoRA read it through this module only, so they never import the packer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lightcoder.artifacts import is_done

INDEX_FILE = "index.json"


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


def open_mask(shards_dir: str | Path, split: str) -> np.ndarray | None:
    """The target roles (windows.py NO_LOSS / PROMPT / TARGET) of a context-level split's windows as a
    read-only uint8 memmap shaped like its windows; None for a document-level pack (every token a target)."""
    index = read_index(shards_dir)
    info = index["splits"].get(split, {})
    if not info.get("mask_file"):
        return None
    shape = (info["num_windows"], index["seq_len"])
    path = Path(shards_dir) / info["mask_file"]
    if not path.exists() or path.stat().st_size != shape[0] * shape[1]:
        raise ValueError(f"{path} does not hold {shape[0]} x {shape[1]} mask bytes: rerun `lightcoder pack --force`")
    if shape[0] == 0:
        return np.zeros(shape, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
