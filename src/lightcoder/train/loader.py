"""Batches of token windows for training and validation, with a resumable position.

A window is one row of a packed shard (lightcoder.packing: `open_shard(shards_dir, split)` ->
(num_windows, seq_len) uint16/uint32 memmap). One training example is one window:
inputs = window[:-1], targets = window[1:].

`WindowLoader` walks a fresh random permutation of the windows every epoch; the permutation is a
pure function of (seed, epoch), so the state `{"epoch", "position"}` is all a resume needs to
continue with exactly the batches a straight run would have seen. A trailing part of an epoch smaller
than a batch is skipped.

Example:
    loader = WindowLoader(open_shard(shards, "train"), batch_size=8, seed=0)
    inputs, targets = loader.next_batch()          # (8, seq_len - 1) int64 each
    state = loader.state_dict()                    # {"epoch": 0, "position": 8}
"""

from __future__ import annotations

import numpy as np
import torch


def epoch_order(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one epoch: a permutation seeded by (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(num_windows)


def to_batch(rows: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) token rows -> inputs, targets, each (B, T-1) int64 on `device`."""
    tokens = torch.from_numpy(rows.astype(np.int64, copy=False))  # (B, T)
    if str(device).startswith("cuda"):
        tokens = tokens.pin_memory().to(device, non_blocking=True)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # (B, T-1) each


class WindowLoader:
    """Endless shuffled batches over the rows of `windows` (an (N, T) array or memmap)."""

    def __init__(self, windows: np.ndarray, batch_size: int, *, seed: int, split: str = "train",
                 device: torch.device | str = "cpu"):
        if windows.ndim != 2 or windows.shape[1] < 2:
            raise ValueError(f"{split} windows must be a (num_windows, seq_len >= 2) array, got shape "
                             f"{windows.shape}; re-run `lightcoder pack`")
        if windows.shape[0] < batch_size:
            raise ValueError(f"the {split} split has {windows.shape[0]} windows, fewer than train.batch_size="
                             f"{batch_size}; lower the batch size, shorten pack.seq_len, or add data")
        self.windows = windows
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.epoch = 0
        self.position = 0  # index into this epoch's order of the next window to read
        self._order = epoch_order(len(windows), seed, 0)

    @property
    def seq_len(self) -> int:
        return int(self.windows.shape[1])

    @property
    def batches_per_epoch(self) -> int:
        return len(self.windows) // self.batch_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position + self.batch_size > len(self._order):
            self.epoch += 1
            self.position = 0
            self._order = epoch_order(len(self.windows), self.seed, self.epoch)
        idx = self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        # Sorted reads are kinder to a memmap; the row order inside the batch is then restored.
        sort = np.argsort(idx)
        rows = np.empty((len(idx), self.seq_len), dtype=self.windows.dtype)
        rows[sort] = self.windows[idx[sort]]
        return to_batch(rows, self.device)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "num_windows": len(self.windows)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_windows", len(self.windows)) != len(self.windows):
            raise ValueError(f"loader state is for {state['num_windows']} windows but the train split has "
                             f"{len(self.windows)}: the shards changed since the checkpoint; re-pack them "
                             "as before or start a fresh run dir")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = epoch_order(len(self.windows), self.seed, self.epoch)


def eval_batches(windows: np.ndarray, batch_size: int, num_batches: int,
                 device: torch.device | str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: `num_batches` batches of windows spread evenly over the split.

    Uses fewer (smaller) batches when the split is small; returns [] for an empty split.
    """
    num = min(len(windows), batch_size * num_batches)
    if num == 0:
        return []
    idx = np.unique(np.linspace(0, len(windows) - 1, num).round().astype(np.int64))
    rows = np.asarray(windows[idx])
    return [to_batch(rows[i:i + batch_size], device) for i in range(0, len(rows), batch_size)]
