"""The training run, top to bottom: `train(train_cfg, model_cfg, *, shards_dir, tokenizer_dir, out_dir)`.

Order: runtime (device, threads, seeds) -> data (shuffled train windows, fixed valid batches) -> model
(build, init_weights(seed)) -> AdamW -> restore the newest checkpoint, or evaluate and save the untrained
step_000000 -> the loop -> final eval, checkpoint and loss plot.

One step: lr_at(step) -> batch -> forward + loss under bf16 autocast (fp32 master weights and optimizer
state) -> backward -> grad clip -> AdamW -> zero grads. The loss stays on the device; the host waits for
it only on log steps, so logging costs no per-step sync.

Budgets (TrainConfig): max_steps, max_tokens, max_minutes (planned once after timing the first steps,
the plan kept in train_state.pt), or one epoch when none is set. Resume is exact: a run stopped at step k
and resumed to N gives bit-for-bit the weights and losses of a straight N-step run on CPU, provided the
LR schedule's length is the same in both (set `schedule_steps`, or use the same budget).
Ctrl-C once: the current step finishes, a checkpoint is saved, KeyboardInterrupt is raised; twice: abort.

Example:
    from lightcoder.model.config import get_preset
    train(TrainConfig(max_minutes=5), get_preset("lc-quickstart"),
          shards_dir="RUN/shards", tokenizer_dir="RUN/tokenizer", out_dir="RUN")
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightcoder.artifacts import append_jsonl, read_jsonl, write_text_atomic
from lightcoder.model.llama import Transformer
from lightcoder.train import checkpoint as ckpt
from lightcoder.train.config import RESUME_SENSITIVE, TrainConfig
from lightcoder.train.loader import WindowLoader, eval_batches
from lightcoder.train.optim import build_optimizer, lr_at, set_lr
from lightcoder.train.plot import plot_losses


PLAN_WARMUP_STEPS = 10  # with max_minutes: steps run before the timing that plans the total


class ResumeMismatchError(ValueError):
    """The checkpoint in out_dir was trained with another model config."""


def train(train_cfg: TrainConfig, model_cfg, *, shards_dir: str | Path, tokenizer_dir: str | Path | None,
          out_dir: str | Path) -> dict:
    """Train (or resume training) a Transformer on the packed shards; returns a summary dict."""
    cfg = train_cfg
    out_dir, ckpt_dir = Path(out_dir), Path(out_dir) / "ckpt"
    device = setup_runtime(cfg)

    # ---- data
    train_windows, valid_windows = open_splits(shards_dir, model_cfg)
    loader = WindowLoader(train_windows, cfg.batch_size, seed=cfg.seed, device=device)
    val_batches = eval_batches(valid_windows, cfg.batch_size, cfg.eval_batches, device) \
        if valid_windows is not None else []
    tokens_per_step = cfg.batch_size * (loader.seq_len - 1)  # positions with a loss
    budget = budget_steps(cfg, tokens_per_step, loader.batches_per_epoch)

    # ---- model and optimizer
    with torch.device("meta"):  # no memory, no throwaway default init; init_weights fills it
        model = Transformer(model_cfg)
    model.to_empty(device=device)
    model.init_weights(cfg.seed)
    model.train()
    optimizer = build_optimizer(model, cfg)
    forward = torch.compile(model) if cfg.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16")

    # ---- restore the newest checkpoint, or start from the untrained model
    state = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "planned_steps": None,
             "timing": {"eval_s": 0.0, "ckpt_s": 0.0}}
    resumed_from = restore(ckpt_dir, model, optimizer, loader, state, cfg, model_cfg)
    metrics_path = out_dir / "metrics.jsonl"
    truncate_metrics(metrics_path, state["step"] if resumed_from is not None else -1)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> float:  # -> seconds spent
        t0 = time.perf_counter()
        snapshot = train_state(state, optimizer, loader, cfg, model_cfg)
        ckpt.save_train_checkpoint(ckpt_dir, step, model, model_cfg, snapshot, tokenizer_dir=tokenizer_dir)
        ckpt.prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)
        return time.perf_counter() - t0

    def validate(step: int) -> tuple[float | None, float]:  # -> (val loss, seconds spent)
        t0 = time.perf_counter()
        val_loss = evaluate(model, val_batches, autocast)  # eager: eval shapes would recompile
        if val_loss is not None:
            log(metrics, {"step": step, "val_loss": val_loss, "tokens": state["tokens"]})
        return val_loss, time.perf_counter() - t0

    # ---- the loop (elapsed_s counts wall time across resumes, evals and checkpoints included)
    start_step, start_tokens, elapsed_before = state["step"], state["tokens"], state["elapsed_s"]
    plan_from = start_step + PLAN_WARMUP_STEPS  # early steps are slow (allocation, kernel selection)
    t_session = t_interval = time.perf_counter()
    paused_s = interval_paused_s = 0.0  # eval + checkpoint seconds, left out of tokens/s
    interval_tokens, loss_sum, loss_count = 0, torch.zeros((), device=device), 0
    val_loss = initial_val_loss = last_loss = None
    with open(metrics_path, "a", encoding="utf-8") as metrics, interrupt_guard() as interrupted, \
            tqdm(total=total_steps(state, budget), initial=state["step"], unit="step", dynamic_ncols=True,
                 disable=None, file=sys.stderr) as bar:
        if resumed_from is None:  # the untrained baseline: its val loss and checkpoint step_000000
            val_loss, state["timing"]["eval_s"] = validate(0)
            initial_val_loss = val_loss
            state["timing"]["ckpt_s"] = save(0)
            paused_s = sum(state["timing"].values())
            t_interval = time.perf_counter()
        last_saved = state["step"]
        stop = stop_reason(state, cfg, budget)
        while stop is None:
            step = state["step"]
            set_lr(optimizer, lr_at(step, cfg, schedule_steps(state, cfg, budget)))
            inputs, targets = loader.next_batch()  # (B, T-1) each
            loss = train_step(forward, optimizer, inputs, targets, autocast=autocast, grad_clip=cfg.grad_clip)
            state["step"] = step = step + 1
            state["tokens"] += tokens_per_step
            loss_sum += loss
            loss_count += 1
            interval_tokens += tokens_per_step
            bar.update(1)

            state["elapsed_s"] = elapsed_before + time.perf_counter() - t_session
            if cfg.max_minutes and state["planned_steps"] is None:
                if step == plan_from:
                    sync(device)
                    t_plan = time.perf_counter()
                elif step == plan_from + cfg.plan_after_steps:
                    sync(device)
                    step_s = (time.perf_counter() - t_plan) / cfg.plan_after_steps
                    state["planned_steps"] = plan_steps(step, state["elapsed_s"], step_s, cfg, **state["timing"])
                    bar.total = total_steps(state, budget)
                    bar.refresh()
            stop = stop_reason(state, cfg, budget)

            if step % cfg.log_every == 0 or stop is not None:
                last_loss = (loss_sum / loss_count).item()  # the only host sync of a training step
                loss_sum.zero_()
                loss_count = 0
                now = time.perf_counter()
                tokens_per_s = interval_tokens / max(1e-9, now - t_interval - interval_paused_s)
                log(metrics, {"step": step, "loss": last_loss, "lr": optimizer.param_groups[0]["lr"],
                              "tokens": state["tokens"], "tokens_per_s": round(tokens_per_s, 1),
                              "elapsed_s": round(state["elapsed_s"], 3)})
                bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
                t_interval, interval_tokens, interval_paused_s = now, 0, 0.0
            if (cfg.eval_every and step % cfg.eval_every == 0) or stop is not None:
                val_loss, spent = validate(step)
                paused_s, interval_paused_s = paused_s + spent, interval_paused_s + spent
            if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or stop is not None:
                spent = save(step)
                last_saved = step
                paused_s, interval_paused_s = paused_s + spent, interval_paused_s + spent
            if interrupted["hit"] and stop is None:  # Ctrl-C: keep this step's state, then re-raise
                stop = "interrupted"
                if last_saved != step:
                    save(step)

    plot_losses(metrics_path, out_dir / "loss.png")
    if stop == "interrupted":
        raise KeyboardInterrupt(f"training interrupted; checkpoint saved at step {state['step']}")
    if val_loss is None:  # resumed with the budget already reached: report the final val loss anyway
        val_loss = evaluate(model, val_batches, autocast)
    session_s = time.perf_counter() - t_session
    return {
        "steps": state["step"], "tokens": state["tokens"], "stop_reason": stop,
        "train_loss": last_loss, "val_loss": val_loss, "initial_val_loss": initial_val_loss,
        "tokens_per_s": round((state["tokens"] - start_tokens) / max(1e-9, session_s - paused_s), 1),
        "elapsed_s": round(state["elapsed_s"], 3), "planned_steps": state["planned_steps"],
        "total_steps": total_steps(state, budget), "resumed_from": resumed_from,
        "checkpoint": str(ckpt.step_dir(ckpt_dir, state["step"])),
        "params": sum(p.numel() for p in model.parameters()), "device": str(device), "dtype": cfg.dtype,
    }


def train_step(forward, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor, *,
               autocast, grad_clip: float) -> torch.Tensor:
    """One optimizer step on one batch; returns the loss as a device tensor (no host sync).

    `forward(inputs, targets) -> (logits, loss)`; grads are clipped over the optimizer's parameters.
    """
    with autocast:
        _, loss = forward(inputs, targets)
    loss.backward()
    if grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ----------------------------------------------------------------------------- setup


def setup_runtime(cfg: TrainConfig) -> torch.device:
    """Pick the device, set CPU threads and all global seeds."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device='cuda' but no CUDA device is available; use --train.device cpu")
    name = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = torch.device("cpu" if name == "auto" else name)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    return device


def open_splits(shards_dir: str | Path, model_cfg) -> tuple[np.ndarray, np.ndarray | None]:
    """(train windows, valid windows or None) of a finished `lightcoder pack` dir, checked against the model."""
    from lightcoder.packing import open_shard, read_index

    index = read_index(shards_dir)  # ValueError when the pack stage is not finished
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


# ----------------------------------------------------------------------------- budget and schedule


def budget_steps(cfg: TrainConfig, tokens_per_step: int, batches_per_epoch: int) -> int | None:
    """Steps allowed by max_steps / max_tokens (the smaller); one epoch if no budget; None if only minutes."""
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps)
    if cfg.max_tokens:
        limits.append(math.ceil(cfg.max_tokens / tokens_per_step))
    if limits:
        return min(limits)
    return None if cfg.max_minutes else batches_per_epoch


def plan_steps(step: int, elapsed_s: float, step_s: float, cfg: TrainConfig, *, eval_s: float,
               ckpt_s: float) -> int:
    """Total steps that fit in max_minutes, given the measured seconds per step.

    Evals and checkpoints are amortised over the steps between them, and one final eval + checkpoint is
    reserved. Example: 300 s left, 0.1 s/step, no evals/checkpoints -> step + 3000.
    """
    per_step = step_s + (eval_s / cfg.eval_every if cfg.eval_every else 0.0) \
        + (ckpt_s / cfg.ckpt_every if cfg.ckpt_every else 0.0)
    remaining_s = cfg.max_minutes * 60 - elapsed_s - eval_s - ckpt_s
    return step + max(1, int(remaining_s / max(per_step, 1e-9)))


def total_steps(state: dict, budget: int | None) -> int | None:
    """The step the run stops at (None while a max_minutes plan is pending)."""
    limits = [n for n in (budget, state["planned_steps"]) if n is not None]
    return min(limits) if limits else None


def schedule_steps(state: dict, cfg: TrainConfig, budget: int | None) -> int | None:
    """Length of the LR schedule: schedule_steps when set, else the run's total steps."""
    return cfg.schedule_steps or total_steps(state, budget)


def stop_reason(state: dict, cfg: TrainConfig, budget: int | None) -> str | None:
    """Why the run stops after the current step, or None to go on."""
    step = state["step"]
    if cfg.max_steps and step >= cfg.max_steps:
        return "max_steps"
    if cfg.max_tokens and state["tokens"] >= cfg.max_tokens:
        return "max_tokens"
    if state["planned_steps"] is not None and step >= state["planned_steps"]:
        return "max_minutes"
    if cfg.max_minutes and state["elapsed_s"] >= cfg.max_minutes * 60:
        return "max_minutes"
    if budget is not None and step >= budget:  # no budget set: one epoch
        return "epoch"
    return None


# ----------------------------------------------------------------------------- eval, state, logging


@torch.no_grad()
def evaluate(forward, batches: list[tuple[torch.Tensor, torch.Tensor]], autocast) -> float | None:
    """Mean loss per token over the fixed validation batches (None when there are none)."""
    if not batches:
        return None
    total, count = 0.0, 0
    for inputs, targets in batches:
        with autocast:
            _, loss = forward(inputs, targets)
        total += loss.float() * targets.numel()
        count += targets.numel()
    return float(total / count)


def train_state(state: dict, optimizer, loader: WindowLoader, cfg: TrainConfig, model_cfg) -> dict:
    """Everything besides the weights that an exact resume needs."""
    return {**state, "timing": dict(state["timing"]), "optimizer": optimizer.state_dict(),
            "loader": loader.state_dict(), "rng": ckpt.rng_state(),
            "train_cfg": cfg.to_dict(), "model_cfg": dataclasses.asdict(model_cfg)}


def restore(ckpt_dir: Path, model, optimizer, loader: WindowLoader, state: dict, cfg: TrainConfig,
            model_cfg) -> int | None:
    """Load the newest complete checkpoint into model/optimizer/loader/state; its step, or None if none."""
    found = ckpt.complete_checkpoints(ckpt_dir)
    if not found:
        return None
    step, path = found[-1]
    saved = ckpt.load_train_state(path)
    expected = dataclasses.asdict(model_cfg)
    diffs = [f"{k}: {saved['model_cfg'].get(k)!r} in the checkpoint, {v!r} now"
             for k, v in expected.items() if saved["model_cfg"].get(k) != v]
    if diffs:
        raise ResumeMismatchError(
            f"{path} was trained with a different model config ({'; '.join(diffs)}); use a new output dir, "
            f"or delete {ckpt_dir} (and metrics.jsonl) to start over")
    changed = [k for k in RESUME_SENSITIVE if _plain(saved["train_cfg"].get(k)) != _plain(getattr(cfg, k))]
    if changed:
        warnings.warn(f"resuming {path} with changed train settings {changed}: the run continues, but will "
                      "not match an uninterrupted run", stacklevel=2)
    ckpt.load_model_weights(path, model)
    optimizer.load_state_dict(saved["optimizer"])
    for group in optimizer.param_groups:  # the saved state carries the old hyperparameters: apply today's
        group.update(betas=tuple(cfg.betas), eps=cfg.eps)
    optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay  # group 0 decays (optim.param_groups)
    if saved["loader"]["batch_size"] == loader.batch_size:
        loader.load_state_dict(saved["loader"])
    else:  # a new batch size cannot continue the same permutation walk exactly; start the next epoch
        loader.load_state_dict({**saved["loader"], "epoch": saved["loader"]["epoch"] + 1, "position": 0})
    ckpt.set_rng_state(saved["rng"])
    for key in ("step", "tokens", "elapsed_s", "planned_steps"):
        state[key] = saved[key]
    state["timing"] = dict(saved.get("timing", state["timing"]))
    print(f"resuming from {path} (step {step}, {saved['tokens']:,} tokens)", file=sys.stderr)
    return step


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def truncate_metrics(path: Path, max_step: int) -> None:
    """Keep only the metrics.jsonl records with step <= max_step (-1: remove all), atomically.

    A torn last line (a killed run) is dropped; a bad line before it is a ValueError naming file:line.
    """
    if not path.exists():
        return
    rows = read_jsonl(path, hint=f"delete {path.name} (it only holds logged losses) and resume")
    kept = [r for r in rows if isinstance(r.get("step"), int) and r["step"] <= max_step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def log(metrics, record: dict) -> None:
    append_jsonl(metrics, record)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def interrupt_guard():
    """First Ctrl-C sets flag["hit"] (the loop checkpoints and raises at the end of the step); a second
    one raises KeyboardInterrupt at once. Only in the main thread, where signal handlers can be set."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True
        print("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
