"""Batches of token windows for training and validation, with a resumable position.

A window is one row of a packed shard (lightcoder.shards: `open_shard(shards_dir, split)` ->
(num_windows, seq_len) uint16/uint32 memmap). One training example is one window:
inputs = window[:-1], targets = window[1:].

`WindowLoader` walks a fresh random permutation of the windows every epoch; the permutation is a
pure function of (seed, epoch), so the state `{"epoch", "position"}` is all a resume needs to
continue with exactly the batches a straight run would have seen. A trailing part of an epoch smaller
than a batch is skipped.

With `streams` (runs of consecutive windows of one repository, `[[first_window, num_windows], ...]` from
shards/index.json), an epoch instead shuffles the streams, concatenates them and deals the result into
`batch_size` lanes: batch row r at step s is lane r's window s, so consecutive windows of a repository go
to consecutive steps of the same row (Transformer-XL ordering). Example: streams [[0, 3], [3, 3]],
batch 2, stream order (1, 0) -> lanes [3, 4, 5] and [0, 1, 2] -> batches (3, 0), (4, 1), (5, 2).

With several ranks, `batch_size` is the global batch: every rank walks the same permutation and reads
only its own contiguous slice of each global batch (rank r of W gets rows r*B/W .. (r+1)*B/W), so the
state stays the global position and a checkpoint resumes on any number of ranks with the same batches.

Example:
    loader = WindowLoader(open_shard(shards, "train"), batch_size=8, seed=0, rank=1, world_size=2)
    inputs, targets = loader.next_batch()          # rows 4..7 of the global batch: (4, seq_len - 1) each
    state = loader.state_dict()                    # {"epoch": 0, "position": 8, ...}
"""

from __future__ import annotations

import numpy as np
import torch


def epoch_order(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one epoch: a permutation seeded by (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(num_windows)


def stream_epoch_order(streams: np.ndarray, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one epoch with stream ordering (see the module docstring): step-major, so
    order[s * batch_size + r] is row r's window at step s. A tail shorter than one lane step is skipped."""
    rng = np.random.default_rng([seed, epoch])
    walk = np.concatenate([np.arange(first, first + n) for first, n in streams[rng.permutation(len(streams))]])
    steps = len(walk) // batch_size
    lanes = walk[: steps * batch_size].reshape(batch_size, steps)  # (B, steps): row r reads lane r
    return lanes.T.reshape(-1)


def check_streams(streams, num_windows: int, where: str = "the train split") -> np.ndarray:
    """[[first, n], ...] -> an (S, 2) int64 array covering every window exactly once (windows outside
    every stream become streams of their own); ValueError naming `where` for overlapping or out-of-range runs."""
    spans = np.asarray(streams, dtype=np.int64).reshape(-1, 2)
    covered = np.zeros(num_windows, dtype=np.int64)
    for first, n in spans:
        if first < 0 or n <= 0 or first + n > num_windows:
            raise ValueError(f"stream [{first}, {n}] of {where} lies outside its {num_windows} windows; "
                             "re-run `lightcoder pack`")
        covered[first:first + n] += 1
    if (covered > 1).any():
        raise ValueError(f"streams of {where} overlap at window {int(np.argmax(covered > 1))}; re-run `lightcoder pack`")
    singles = np.flatnonzero(covered == 0)
    return np.concatenate([spans, np.stack([singles, np.ones_like(singles)], axis=1)]) if len(singles) else spans


def to_batch(rows: np.ndarray, device: torch.device | str = "cpu", mask_rows: np.ndarray | None = None,
             loss_from: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) token rows -> inputs, targets, each (B, T-1) int64 on `device`.

    mask_rows: the rows' target roles (windows.py); a target whose role is below `loss_from` becomes
    -100 (no loss). Example: roles [0, 1, 1, 2], loss_from 2 -> targets [-100, -100, t3] for inputs t0..t2.
    """
    rows = rows.astype(np.int64)  # (B, T), a copy: masking writes into it
    if mask_rows is not None:
        rows_targets = rows[:, 1:].copy()
        rows_targets[mask_rows[:, 1:] < loss_from] = -100
    else:
        rows_targets = rows[:, 1:]
    inputs, targets = torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(np.ascontiguousarray(rows_targets))
    if str(device).startswith("cuda"):
        inputs = inputs.pin_memory().to(device, non_blocking=True)
        targets = targets.pin_memory().to(device, non_blocking=True)
    return inputs, targets  # (B, T-1) each


class WindowLoader:
    """Endless shuffled batches over the rows of `windows` (an (N, T) array or memmap)."""

    def __init__(self, windows: np.ndarray, batch_size: int, *, seed: int, split: str = "train",
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                 streams: list | None = None, masks: np.ndarray | None = None, loss_from: int = 1):
        if windows.ndim != 2 or windows.shape[1] < 2:
            raise ValueError(f"{split} windows must be a (num_windows, seq_len >= 2) array, got shape "
                             f"{windows.shape}; re-run `lightcoder pack`")
        if windows.shape[0] < batch_size:
            raise ValueError(f"the {split} split has {windows.shape[0]} windows, fewer than train.batch_size="
                             f"{batch_size}; lower the batch size, shorten pack.seq_len, or add data")
        if batch_size % world_size:
            raise ValueError(f"train.batch_size={batch_size} (the global batch) must be divisible by the "
                             f"{world_size} ranks; pick a multiple of {world_size}")
        if masks is not None and masks.shape != windows.shape:
            raise ValueError(f"{split} masks have shape {masks.shape}, the windows {windows.shape}; re-run `lightcoder pack`")
        self.windows, self.masks, self.loss_from = windows, masks, loss_from
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.seed = seed
        self.device = device
        self.streams = None if streams is None else check_streams(streams, len(windows), f"the {split} split")
        self.epoch = 0
        self.position = 0  # index into this epoch's order of the next window to read
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self.streams is None:
            return epoch_order(len(self.windows), self.seed, epoch)
        return stream_epoch_order(self.streams, self.batch_size, self.seed, epoch)

    @property
    def seq_len(self) -> int:
        return int(self.windows.shape[1])

    @property
    def batches_per_epoch(self) -> int:
        return len(self._order) // self.batch_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position + self.batch_size > len(self._order):
            self.epoch += 1
            self.position = 0
            self._order = self._epoch_order(self.epoch)
        local = self.batch_size // self.world_size
        start = self.position + self.rank * local
        idx = self._order[start:start + local]  # this rank's slice of the global batch
        self.position += self.batch_size
        # Sorted reads are kinder to a memmap; the row order inside the batch is then restored.
        sort = np.argsort(idx)
        rows = np.empty((len(idx), self.seq_len), dtype=self.windows.dtype)
        rows[sort] = self.windows[idx[sort]]
        mask_rows = None
        if self.masks is not None:
            mask_rows = np.empty((len(idx), self.seq_len), dtype=self.masks.dtype)
            mask_rows[sort] = self.masks[idx[sort]]
        return to_batch(rows, self.device, mask_rows, self.loss_from)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "num_windows": len(self.windows),
                "streams": self.streams is not None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_windows", len(self.windows)) != len(self.windows):
            raise ValueError(f"loader state is for {state['num_windows']} windows but the train split has "
                             f"{len(self.windows)}: the shards changed since the checkpoint; re-pack them "
                             "as before or start a fresh run dir")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._epoch_order(self.epoch)


def eval_batches(windows: np.ndarray, batch_size: int, num_batches: int, device: torch.device | str = "cpu",
                 masks: np.ndarray | None = None, loss_from: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: `num_batches` batches of windows spread evenly over the split.

    Uses fewer (smaller) batches when the split is small; returns [] for an empty split.
    """
    num = min(len(windows), batch_size * num_batches)
    if num == 0:
        return []
    idx = np.unique(np.linspace(0, len(windows) - 1, num).round().astype(np.int64))
    rows = np.asarray(windows[idx])
    mask_rows = np.asarray(masks[idx]) if masks is not None else None
    return [to_batch(rows[i:i + batch_size], device, None if mask_rows is None else mask_rows[i:i + batch_size],
                     loss_from) for i in range(0, len(rows), batch_size)]
