"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedules (warmup, then
cosine or warmup-stable-decay; train/budget.py decides when a wall-clock run decays).

`lr_at` is a pure function of the step, so a resumed run recomputes exactly the learning rates that a
straight run would have used; nothing about the schedule lives in optimizer state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightcoder.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig, total_steps: int | None, decay_start: int | None = None) -> float:
    """Learning rate for the optimizer step with 0-based index `step`.

    Linear warmup from lr/warmup_steps to lr over `warmup_steps` steps, then by cfg.schedule:
    - "cosine": from lr down to min_lr reached at step `total_steps - 1`, held after it;
    - "wsd": lr until the decay starts (`decay_start`, else the last decay_fraction of the steps after
      warmup), then linearly down to min_lr at step `total_steps - 1`.
    `total_steps=None` (a max_minutes run not planned yet) holds lr after the warmup.
    Example (cosine): warmup 10, total 110, lr 1.0, min 0.1: step 0 -> 0.1, 9 -> 1.0, 59 -> ~0.55, 109 -> 0.1.
    Example (wsd, decay_fraction 0.2): warmup 10, total 110: steps 10..89 -> 1.0, 99 -> ~0.55, 109 -> 0.1.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if total_steps is None:
        return cfg.lr
    if cfg.schedule == "wsd":
        start = decay_start if decay_start is not None else wsd_decay_start(total_steps, cfg)
        if step < start:
            return cfg.lr
        progress = min(1.0, (step - start) / max(1, total_steps - 1 - start))
        return cfg.lr + progress * (cfg.min_lr - cfg.lr)
    decay_steps = total_steps - 1 - cfg.warmup_steps
    if decay_steps <= 0:
        return cfg.lr if step < total_steps else cfg.min_lr
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def wsd_decay_start(total_steps: int, cfg: TrainConfig) -> int:
    """The first decaying step of a wsd schedule of known length: the last decay_fraction after warmup.

    Example: warmup 10, total 110, decay_fraction 0.2 -> 90
    """
    return cfg.warmup_steps + round((total_steps - cfg.warmup_steps) * (1.0 - cfg.decay_fraction))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (decayed) and norms/embeddings/biases (not decayed)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embed" in name or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "decay": True},
            {"params": no_decay, "weight_decay": 0.0, "decay": False}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over fp32 master weights (the fused kernel, CPU and CUDA, is the fastest implementation), or
    with train.optimizer "muon" Muon on the blocks' matrices and AdamW on the rest (train/muon.py), its
    Newton-Schulz iterations in the run's dtype.

    The lr set here is a placeholder: the loop calls `set_lr(optimizer, lr_at(...))` before every step.
    """
    if cfg.optimizer == "muon":
        from lightcoder.train.muon import build_muon_adamw
        from lightcoder.train.precision import resolve_dtype

        # the run's dtype (train() has resolved "auto" the same on every rank; elsewhere it resolves here)
        bf16 = resolve_dtype(cfg.dtype, next(model.parameters()).device) == "bf16"
        return build_muon_adamw(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps,
                                ns_dtype=torch.bfloat16 if bf16 else torch.float32)
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                             eps=cfg.eps, fused=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
