"""What a training run reports: metrics.jsonl + TensorBoard events, FLOPs and MFU, loss spikes and NaNs.

- `MetricsLog` appends one JSON line per record to RUN/metrics.jsonl and mirrors every number to
  TensorBoard event files in RUN/tensorboard/ (`tensorboard --logdir RUN/tensorboard`). Rank 0 only.
- MFU = achieved model FLOP/s / peak FLOP/s of all ranks. Model FLOPs per trained token follow the PaLM
  appendix: 6 x (matmul parameters: non-embedding + output head) + 12 x n_layers x dim x seq_len
  (attention scores and values, full square, as PaLM counts it). Recomputation (activation
  checkpointing) is not counted: this is model FLOPs utilization, not hardware FLOPs.
- The peak is measured, not taken from a data sheet: `measure_matmul_peak` times large square matmuls
  in the training dtype on the training device (override with `train.peak_tflops`).
- `LossWatch` keeps an exponential moving average of the logged loss and reports a spike (a record
  with "event": "loss_spike" and "spike_loss", no "loss" key, so loss curves skip it) when an
  interval's largest step loss exceeds `spike_factor` x that average; a NaN/inf loss stops the run with
  the first bad step (tracked on the device without a host sync).
- `Interval` sums loss and grad norm on the device between two log lines, with the tokens and the
  eval/checkpoint seconds that tokens/s leaves out.

Example: flops_per_token(get_preset("lc-quickstart", vocab_size=8192), seq_len=511) -> ~4.3e7
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from lightcoder.artifacts import append_jsonl
from lightcoder.model.config import num_params
from lightcoder.train.distributed import all_reduce_mean


def flops_per_token(model_cfg, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token of a window of `seq_len` positions."""
    matmul_params = num_params(model_cfg) + model_cfg.vocab_size * model_cfg.dim  # + output head
    attention = 12 * model_cfg.n_layers * model_cfg.dim * seq_len
    return 6 * matmul_params + attention


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, *, size: int = 0, seconds: float = 0.5,
                        clock=time.perf_counter) -> float:
    """Achieved FLOP/s of repeated (size x size) @ (size x size) matmuls in `dtype` on `device`.

    size 0 picks 1024 on CPU and 8192 on CUDA. Runs about `seconds` after one warm-up call.
    """
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    _sync(device)
    n, t0 = 0, clock()
    while True:
        torch.mm(a, b)
        n += 1
        if n % 4 == 0:
            _sync(device)
            elapsed = clock() - t0
            if elapsed >= seconds:
                return 2 * size**3 * n / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MetricsLog:
    """metrics.jsonl (append, one flushed line per record) + TensorBoard scalars; a no-op off rank 0."""

    def __init__(self, out_dir: Path, *, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self._file = open(out_dir / "metrics.jsonl", "a", encoding="utf-8") if enabled else None
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: metrics.jsonl has everything
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        append_jsonl(self._file, record)
        if self._tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"train/{key}" if key != "val_loss" else "valid/loss", value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LossWatch:
    """Per-step NaN tracking on the device, and spike detection at log steps (see module docstring)."""

    def __init__(self, device: torch.device, spike_factor: float, ema_decay: float = 0.9):
        self.spike_factor, self.ema_decay = spike_factor, ema_decay
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.max_loss = torch.full((), -math.inf, device=device)
        self.max_step = torch.zeros((), dtype=torch.int64, device=device)
        self.ema: float | None = None

    def observe(self, step: int, loss: torch.Tensor) -> None:
        """Called every step with the (device) loss; no host sync."""
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, step, self.first_bad_step)
        higher = loss > self.max_loss
        self.max_loss = torch.where(higher, loss, self.max_loss)
        self.max_step = torch.where(higher, step, self.max_step)

    def saw_non_finite(self) -> bool:
        """Whether any observed loss was NaN/inf (one host sync: before a checkpoint is written)."""
        return int(self.first_bad_step.item()) >= 0

    def check(self, mean_loss: float) -> dict | None:
        """At a log step (after a host sync): raise on NaN/inf, return a spike record or None."""
        bad_step = int(self.first_bad_step.item())
        if bad_step >= 0 or not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"the training loss became NaN/inf at step {bad_step if bad_step >= 0 else '?'}; the last good "
                "checkpoint is kept: lower train.lr, raise train.warmup_steps or check the data, then resume")
        spike = None
        max_loss, max_step = float(self.max_loss.item()), int(self.max_step.item())
        if self.spike_factor and self.ema is not None and max_loss > self.spike_factor * self.ema:
            spike = {"step": max_step, "event": "loss_spike", "spike_loss": max_loss, "loss_ema": round(self.ema, 4)}
        self.ema = mean_loss if self.ema is None else self.ema_decay * self.ema + (1 - self.ema_decay) * mean_loss
        self.max_loss.fill_(-math.inf)
        return spike


class Interval:
    """The steps since the last log line: loss and grad-norm sums stay on the device (the host waits for
    them only in `close`), with the tokens trained and the eval/checkpoint seconds that tokens/s leaves out."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.norm_sum = torch.zeros((), device=device)
        self.steps, self.tokens, self.paused_s = 0, 0, 0.0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor, tokens: int) -> None:
        self.loss_sum += loss
        self.norm_sum += grad_norm
        self.steps += 1
        self.tokens += tokens

    def restart(self) -> None:
        """Start timing afresh (after the untrained model's eval and checkpoint)."""
        self.start, self.tokens, self.paused_s = time.perf_counter(), 0, 0.0

    def close(self, env) -> tuple[float, float, float, int]:
        """(mean loss, mean grad norm over the steps and ranks, seconds without pauses, tokens); the next
        interval starts now. The only host syncs of training."""
        loss = all_reduce_mean(self.loss_sum / self.steps, env).item()
        norm = all_reduce_mean(self.norm_sum / self.steps, env).item()
        self.loss_sum.zero_()
        self.norm_sum.zero_()
        now, tokens = time.perf_counter(), self.tokens
        seconds = max(1e-9, now - self.start - self.paused_s)
        self.steps, self.tokens, self.paused_s, self.start = 0, 0, 0.0, now
        return loss, norm, seconds, tokens
