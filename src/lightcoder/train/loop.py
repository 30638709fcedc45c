"""The training run, top to bottom: `train(train_cfg, model_cfg, *, shards_dir, tokenizer_dir, out_dir)`.

Order: runtime (process group under torchrun, device, threads, seeds) -> data (this rank's slice of the
shuffled train windows, fixed valid batches) -> check the checkpoint to resume against the model config
(before any compute) -> model (train/parallel.py: activation checkpointing, compile, FSDP2/DDP, seeded
init) -> AdamW -> restore the newest checkpoint, or evaluate and save the untrained step_000000 -> the
loop -> final eval, checkpoint and loss plot.
`train` reads as that loop; `Session` holds the run's objects and state with one method per line
(step, log, validate, save), and telemetry.Interval the sums between two log lines.

One step: lr_at(step) -> grad_accum micro-batches of forward + loss under bf16 autocast where the device
is fast in it (train/precision.py; fp32 master weights and optimizer state; block-causal document
masking) + backward (gradients averaged over ranks on
the last micro-batch) -> grad clip -> AdamW -> zero grads. The loss stays on the device; the host waits
for it only on log steps, so logging costs no per-step sync. NaN/inf losses stop the run naming the step.

Under torchrun every rank runs this same function: collectives (checkpoints, validation, loss averages)
happen at the same steps everywhere, and decisions that depend on a wall clock (the max_minutes plan,
the time limit, Ctrl-C) are taken by rank 0 and broadcast at log steps. Rank 0 alone writes
metrics.jsonl, TensorBoard events, the plot and the progress bar.

Budgets (TrainConfig, train/budget.py): max_steps, max_tokens, max_minutes (the wsd decay, or the cosine
plan, fixed from the clock and kept in train_state.pt), or one epoch when none is set. Resume is exact: a run stopped at step k
and resumed to N gives bit-for-bit the weights and losses of a straight N-step run on CPU with the same
number of ranks, provided the LR schedule's length is the same in both (set `schedule_steps`, or use the
same budget); on another number of ranks it continues with the same batches and optimizer state.
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
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightcoder.artifacts import read_jsonl, write_text_atomic
from lightcoder.model.config import num_params
from lightcoder.model.llama import document_ids_from_tokens
from lightcoder.train import checkpoint as ckpt
from lightcoder.train.budget import (
    TimePlanner, budget_steps, keep_running_decay, schedule_steps, stop_reason, total_steps,
)
from lightcoder.train.config import RESUME_SENSITIVE, TrainConfig
from lightcoder.train.inputs import open_splits, stop_weight_of, train_streams
from lightcoder.train.distributed import (
    Dist, all_reduce_sum, any_rank, barrier, broadcast_object, init_distributed,
)
from lightcoder.train.loader import WindowLoader, eval_batches
from lightcoder.train.optim import build_optimizer, lr_at, set_lr
from lightcoder.train.parallel import build_parallel_model, no_grad_sync
from lightcoder.train.plot import plot_losses
from lightcoder.train.precision import choose_dtype
from lightcoder.windows import PROMPT, TARGET
from lightcoder.train.telemetry import Interval, LossWatch, MetricsLog, flops_per_token, measure_matmul_peak


class ResumeMismatchError(ValueError):
    """The checkpoint in out_dir was trained with another model config."""


def train(train_cfg: TrainConfig, model_cfg, *, shards_dir: str | Path, tokenizer_dir: str | Path | None,
          out_dir: str | Path) -> dict:
    """Train (or resume training) a Transformer on the packed shards; returns a summary dict."""
    env = setup_runtime(train_cfg)
    dtype, why = broadcast_object(run_dtype(train_cfg, env, Path(out_dir) / "ckpt"), env)  # rank 0's, everywhere
    if train_cfg.dtype == "auto" and env.is_main:
        print(f"train.dtype auto -> {dtype} ({why})", file=sys.stderr)
    train_cfg = dataclasses.replace(train_cfg, dtype=dtype)
    run = Session.open(train_cfg, model_cfg, env, shards_dir=shards_dir, tokenizer_dir=tokenizer_dir,
                       out_dir=Path(out_dir))
    cfg, state = train_cfg, run.state
    with MetricsLog(run.out_dir, enabled=env.is_main, tensorboard=cfg.tensorboard) as run.metrics, \
            interrupt_guard() as interrupted, \
            tqdm(total=total_steps(state, run.budget), initial=state["step"], unit="step", dynamic_ncols=True,
                 disable=None if env.is_main else True, file=sys.stderr) as run.bar:
        if run.resumed_from is None:
            run.start_fresh()  # the untrained baseline: its val loss and checkpoint step_000000
        stop = stop_reason(state, cfg, run.budget)
        while stop is None:
            step = run.step()
            log_step = step % cfg.log_every == 0
            stop = run.check_budget(log_step)
            if log_step or stop is not None:
                run.log(step, stop)
            if (cfg.eval_every and step % cfg.eval_every == 0) or stop is not None:
                run.pause(run.validate(step))
            if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or stop is not None:
                run.pause(run.save(step, final=stop is not None))
            # Ctrl-C: keep this step's state, then re-raise (ranks agree at log steps)
            if stop is None and (not env.enabled or log_step) and any_rank(interrupted["hit"], env):
                stop = "interrupted"
                if run.last_saved != step:
                    run.save(step, final=True)
    if env.is_main:
        plot_losses(run.out_dir / "metrics.jsonl", run.out_dir / "loss.png")
    if stop == "interrupted":
        raise KeyboardInterrupt(f"training interrupted; checkpoint saved at step {state['step']}")
    return run.summary(stop)


class Session:
    """One process's training run between `train`'s lines: the model, optimizer, data and run state, with
    the steps that change them. `state` is what train_state.pt keeps; the rest is this session's clock."""

    def __init__(self, cfg: TrainConfig, model_cfg, env: Dist, *, model, optimizer, loader: WindowLoader,
                 val_batches: list, state: dict, resumed_from: int | None, peak: float, out_dir: Path,
                 tokenizer_dir: str | Path | None, stop_weight: tuple[int, float] | None = None):
        self.cfg, self.model_cfg, self.env = cfg, model_cfg, env
        self.stop_weight = stop_weight  # (</s> id, weight) for the loss, None = unweighted
        self.model, self.optimizer, self.loader, self.val_batches = model, optimizer, loader, val_batches
        self.state, self.resumed_from, self.last_saved = state, resumed_from, state["step"]
        self.out_dir, self.ckpt_dir, self.tokenizer_dir = out_dir, out_dir / "ckpt", tokenizer_dir
        self.autocast = torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16")
        self.tokens_per_step = cfg.batch_size * (loader.seq_len - 1)  # positions with a loss, all ranks
        self.budget = budget_steps(cfg, self.tokens_per_step, loader.batches_per_epoch)
        self.flops = flops_per_token(model_cfg, loader.seq_len - 1)
        self.peak = peak  # FLOP/s of one device
        # the clock: elapsed_s counts wall time across resumes, evals and checkpoints included
        self.start_step, self.start_tokens, self.elapsed_before = state["step"], state["tokens"], state["elapsed_s"]
        self.planner = TimePlanner(cfg, state["step"]) if cfg.max_minutes else None  # budget.py: fixes the length
        self.t_session, self.paused_s = time.perf_counter(), 0.0  # eval + checkpoint seconds, left out of tokens/s
        self.interval = Interval(env.device)
        self.watch = LossWatch(env.device, cfg.spike_factor)
        self.val_loss = self.initial_val_loss = self.last_loss = None
        self.metrics = self.bar = None  # set by `train` for the loop's duration

    @classmethod
    def open(cls, cfg: TrainConfig, model_cfg, env: Dist, *, shards_dir: str | Path,
             tokenizer_dir: str | Path | None, out_dir: Path) -> Session:
        """Data (this rank's rows of each global batch), the resume check (before any compute), model and
        optimizer (parallel.py: AC -> compile -> FSDP2/DDP -> seeded init), then the newest checkpoint."""
        from lightcoder.shards import open_mask

        train_windows, valid_windows = open_splits(shards_dir, model_cfg, tokenizer_dir)
        if cfg.batch_size % (cfg.grad_accum * env.world_size):
            raise ValueError(f"train.batch_size={cfg.batch_size} must be divisible by grad_accum x ranks = "
                             f"{cfg.grad_accum} x {env.world_size}; pick a multiple of {cfg.grad_accum * env.world_size}")
        loss_from = PROMPT if cfg.fim_prompt_loss else TARGET  # context-level FIM: which tokens get a loss
        loader = WindowLoader(train_windows, cfg.batch_size, seed=cfg.seed, device=env.device, rank=env.rank,
                              world_size=env.world_size, streams=train_streams(shards_dir) if cfg.stream_order else None,
                              masks=open_mask(shards_dir, "train"), loss_from=loss_from)
        val_batches = eval_batches(valid_windows, cfg.batch_size, cfg.eval_batches, env.device,
                                   open_mask(shards_dir, "valid"), loss_from) if valid_windows is not None else []
        stop_weight = stop_weight_of(cfg, shards_dir, tokenizer_dir)
        resume_path = check_resume(out_dir / "ckpt", cfg, model_cfg)
        model = build_parallel_model(model_cfg, cfg, env)
        optimizer = build_optimizer(model, cfg)
        peak = cfg.peak_tflops * 1e12 or broadcast_object(  # measured before the restore sets the RNGs
            matmul_peak(env.device, torch.bfloat16 if cfg.dtype == "bf16" else torch.float32), env)
        state = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "planned_steps": None, "decay_start": None,
                 "timing": {"eval_s": 0.0, "ckpt_s": 0.0}}
        resumed_from = restore(resume_path, model, optimizer, loader, state, cfg, env)
        out_dir.mkdir(parents=True, exist_ok=True)
        if env.is_main:  # metrics.jsonl up to the checkpoint's step (a fresh run drops all of it)
            truncate_metrics(out_dir / "metrics.jsonl", state["step"] if resumed_from is not None else -1)
        barrier(env)
        return cls(cfg, model_cfg, env, model=model, optimizer=optimizer, loader=loader, val_batches=val_batches,
                   state=state, resumed_from=resumed_from, peak=peak, out_dir=out_dir, tokenizer_dir=tokenizer_dir,
                   stop_weight=stop_weight)

    def start_fresh(self) -> None:
        """The untrained model's val loss and checkpoint step_000000, timed into state["timing"]."""
        self.state["timing"]["eval_s"] = self.validate(0)
        self.initial_val_loss = self.val_loss
        self.state["timing"]["ckpt_s"] = self.save(0)
        self.paused_s = sum(self.state["timing"].values())
        self.interval.restart()

    def step(self) -> int:
        """One optimizer step at this step's learning rate on this rank's rows (B_rank, T-1); the new step."""
        cfg, state = self.cfg, self.state
        set_lr(self.optimizer, lr_at(state["step"], cfg, schedule_steps(state, cfg, self.budget),
                                     None if cfg.schedule_steps else state["decay_start"]))
        inputs, targets = self.loader.next_batch()
        loss, grad_norm = optimizer_step(self.model, self.optimizer, inputs, targets, autocast=self.autocast,
                                         grad_clip=cfg.grad_clip, grad_accum=cfg.grad_accum,
                                         document_mask=cfg.document_mask, stop_weight=self.stop_weight)
        state["step"] += 1
        state["tokens"] += self.tokens_per_step
        self.watch.observe(state["step"], loss)
        self.interval.add(loss, grad_norm, self.tokens_per_step)
        self.bar.update(1)
        return state["step"]

    def check_budget(self, log_step: bool) -> str | None:
        """Advance elapsed_s (ranks agree on rank 0's clock at log steps, so wall-clock stops match) and
        return why the run stops now, or None."""
        if not self.env.enabled or log_step:
            clock = self.elapsed_before + time.perf_counter() - self.t_session
            self.state["elapsed_s"] = broadcast_object(clock, self.env)
        return stop_reason(self.state, self.cfg, self.budget)

    def log(self, step: int, stop: str | None) -> None:
        """Close the log interval: mean loss (NaN/inf raise, spikes warn), the time plan, one metrics row."""
        cfg, state, env = self.cfg, self.state, self.env
        self.last_loss, mean_norm, seconds, tokens = self.interval.close(env)
        spike = self.watch.check(self.last_loss)  # raises on NaN/inf, naming the first bad step
        if spike is not None:
            warnings.warn(f"loss spike at step {spike['step']}: {spike['spike_loss']:.3f} > "
                          f"{cfg.spike_factor} x running mean {spike['loss_ema']:.3f}", stacklevel=3)
            self.metrics.log(spike)
        tokens_per_s = tokens / seconds
        if self.planner is not None and state["planned_steps"] is None and stop is None:
            plan = broadcast_object(self.planner.observe(step, state["elapsed_s"],
                                                         seconds * self.tokens_per_step / max(1, tokens),
                                                         state["timing"]), env)
            if plan is not None:
                state.update(keep_running_decay(plan, cfg, self.budget))  # never back to the peak LR
                self.bar.total = total_steps(state, self.budget)
                self.bar.refresh()
        mfu = tokens_per_s * self.flops / (self.peak * env.world_size)
        self.metrics.log({"step": step, "loss": self.last_loss, "lr": self.optimizer.param_groups[0]["lr"],
                          "grad_norm": round(mean_norm, 4), "tokens": state["tokens"],
                          "tokens_per_s": round(tokens_per_s, 1), "mfu": round(mfu, 4),
                          "elapsed_s": round(state["elapsed_s"], 3)})
        self.bar.set_postfix(loss=f"{self.last_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", mfu=f"{100 * mfu:.1f}%",
                             refresh=False)

    def validate(self, step: int) -> float:
        """Val loss on the fixed batches into self.val_loss and metrics.jsonl; the seconds spent."""
        t0 = time.perf_counter()
        self.val_loss = evaluate(self.model, self.val_batches, self.autocast, env=self.env,
                                 document_mask=self.cfg.document_mask)
        if self.val_loss is not None:
            self.metrics.log({"step": step, "val_loss": self.val_loss, "tokens": self.state["tokens"]})
        return time.perf_counter() - t0

    def save(self, step: int, final: bool = False) -> float:
        """Checkpoint `step` (HF export per train.export_hf, always for step 0 and the last); the seconds spent."""
        t0 = time.perf_counter()
        # a NaN loss since the last log step (a checkpoint step between log steps, a Ctrl-C save) must not be
        # saved: pruning could then delete the last good checkpoint
        if any_rank(self.watch.saw_non_finite(), self.env):
            self.watch.check(math.nan)  # raises, naming the first bad step
        snapshot = train_state(self.state, self.loader, self.cfg, self.model_cfg)
        ckpt.save_train_checkpoint(self.ckpt_dir, step, self.model, self.optimizer, self.model_cfg, snapshot,
                                   env=self.env, tokenizer_dir=self.tokenizer_dir,
                                   export_hf=self.cfg.export_hf == "all" or final or step == 0)
        if self.env.is_main:
            ckpt.prune_checkpoints(self.ckpt_dir, self.cfg.keep_checkpoints)
        self.last_saved = step
        return time.perf_counter() - t0

    def pause(self, seconds: float) -> None:
        """Leave `seconds` of eval or checkpoint out of tokens/s."""
        self.paused_s += seconds
        self.interval.paused_s += seconds

    def summary(self, stop: str | None) -> dict:
        """What `train` returns: steps, losses, throughput, the plan, the checkpoint and the setup."""
        cfg, state, env = self.cfg, self.state, self.env
        if self.val_loss is None:  # resumed with the budget already reached: report the final val loss anyway
            self.val_loss = evaluate(self.model, self.val_batches, self.autocast, env=env,
                                     document_mask=cfg.document_mask)
        session_s = time.perf_counter() - self.t_session
        tokens_per_s = (state["tokens"] - self.start_tokens) / max(1e-9, session_s - self.paused_s)
        return {
            "steps": state["step"], "tokens": state["tokens"], "stop_reason": stop,
            "train_loss": self.last_loss, "val_loss": self.val_loss, "initial_val_loss": self.initial_val_loss,
            "tokens_per_s": round(tokens_per_s, 1),
            "mfu": round(tokens_per_s * self.flops / (self.peak * env.world_size), 4),
            "peak_tflops_per_device": round(self.peak / 1e12, 3),
            "elapsed_s": round(state["elapsed_s"], 3), "planned_steps": state["planned_steps"],
            "decay_start": state["decay_start"], "schedule": cfg.schedule,
            "total_steps": total_steps(state, self.budget), "resumed_from": self.resumed_from,
            "checkpoint": str(ckpt.step_dir(self.ckpt_dir, state["step"])),
            "params": num_params(self.model_cfg, non_embedding=False), "device": str(env.device),
            "dtype": cfg.dtype, "world_size": env.world_size, "parallel": cfg.parallel if env.enabled else "none",
            "global_batch": cfg.batch_size, "grad_accum": cfg.grad_accum,
        }


def optimizer_step(model, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor, *,
                   autocast, grad_clip: float, grad_accum: int = 1, document_mask: bool = False,
                   stop_weight: tuple[int, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on this rank's rows (B, T) in `grad_accum` micro-batches; returns (mean loss,
    total grad norm before clipping) as device tensors (no host sync). stop_weight (token id, w): that
    token's targets weigh w in the loss (train.stop_loss_weight on `</s>`).

    Each micro-batch loss is a mean over its tokens, scaled by 1/grad_accum; DDP/FSDP average the
    gradients over ranks. Every position of a packed window has a target, so all micro-batches hold the
    same number of tokens and this is exactly the mean over the global batch.
    """
    total = torch.zeros((), device=inputs.device)
    for i, (x, y) in enumerate(zip(inputs.chunk(grad_accum), targets.chunk(grad_accum))):
        doc = document_ids_from_tokens(x) if document_mask else None  # (b, T) block-causal attention
        weights = None if stop_weight is None else torch.where(y == stop_weight[0], stop_weight[1], 1.0)  # (b, T)
        with no_grad_sync(model, last_micro_step=i == grad_accum - 1):
            with autocast:
                _, loss = model(x, y, document_ids=doc, fused_loss=True, target_weights=weights)  # no (b, T, V) logits
            (loss / grad_accum).backward()
        total += loss.detach()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf, foreach=True)
    if hasattr(norm, "full_tensor"):  # FSDP2: a replicated DTensor
        norm = norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / grad_accum, norm.detach()


# ----------------------------------------------------------------------------- setup


def setup_runtime(cfg: TrainConfig) -> Dist:
    """Join the process group (under torchrun), pick the device, set CPU threads and all global seeds."""
    env = init_distributed(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if env.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    return env


def run_dtype(cfg: TrainConfig, env: Dist, ckpt_dir: Path) -> tuple[str, str]:
    """(dtype, why) this run trains in: train.dtype, or for "auto" the dtype of the checkpoint it resumes
    (an exact resume, also for runs from before "auto", which trained in bf16), else the device's faster one."""
    if cfg.dtype == "auto":
        found = ckpt.complete_checkpoints(ckpt_dir)
        saved = ckpt.load_train_state(found[-1][1])["train_cfg"].get("dtype") if found else None
        if saved in ("bf16", "fp32"):
            other = "fp32" if saved == "bf16" else "bf16"
            return saved, f"as the checkpoint it resumes trained; --train.dtype {other} to change"
    return choose_dtype(cfg.dtype, env.device)


@lru_cache(maxsize=None)
def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """The measured matmul FLOP/s of this device (once per process)."""
    return measure_matmul_peak(device, dtype, seconds=0.25 if device.type == "cpu" else 1.0)


# ----------------------------------------------------------------------------- eval, state, logging


@torch.no_grad()
def evaluate(model, batches: list[tuple[torch.Tensor, torch.Tensor]], autocast, *, env: Dist = Dist(),
             document_mask: bool = False) -> float | None:
    """Mean loss per token over the fixed validation batches (None when there are none).

    Each rank evaluates its rows r, r+W, ... of every batch (a rank without rows runs row 0 with weight 0,
    so every rank runs the same forwards, as FSDP requires); sums are reduced over ranks.
    """
    if not batches:
        return None
    total = torch.zeros(2, dtype=torch.float64, device=batches[0][0].device)  # (loss sum, tokens)
    for inputs, targets in batches:
        x, y, weight = inputs[env.rank::env.world_size], targets[env.rank::env.world_size], 1.0
        if len(x) == 0:
            x, y, weight = inputs[:1], targets[:1], 0.0
        doc = document_ids_from_tokens(x) if document_mask else None
        with autocast:
            _, loss = model(x, y, document_ids=doc, fused_loss=True)
        targets = (y != -100).sum()  # masked FIM prompts carry no loss
        total[0] += loss.double() * targets * weight
        total[1] += targets * weight
    total = all_reduce_sum(total, env)
    return float(total[0] / total[1])


def train_state(state: dict, loader: WindowLoader, cfg: TrainConfig, model_cfg) -> dict:
    """Everything besides model and optimizer (saved with DCP) that an exact resume needs; the RNG
    states of all ranks are added by checkpoint.save_train_checkpoint."""
    return {**state, "timing": dict(state["timing"]), "loader": loader.state_dict(),
            "train_cfg": cfg.to_dict(), "model_cfg": dataclasses.asdict(model_cfg)}


def check_resume(ckpt_dir: Path, cfg: TrainConfig, model_cfg) -> Path | None:
    """The newest complete checkpoint to resume from (None: fresh run), after checking that it was
    trained with this model config (ResumeMismatchError otherwise) and warning on changed settings."""
    found = ckpt.complete_checkpoints(ckpt_dir)
    if not found:
        return None
    path = found[-1][1]
    saved = ckpt.load_train_state(path)
    expected = dataclasses.asdict(model_cfg)
    diffs = [f"{k}: {saved['model_cfg'].get(k)!r} in the checkpoint, {v!r} now"
             for k, v in expected.items() if saved["model_cfg"].get(k) != v]
    if diffs:
        raise ResumeMismatchError(
            f"{path} was trained with a different model config ({'; '.join(diffs)}); use a new output dir, "
            f"or delete {ckpt_dir} (and metrics.jsonl) to start over")
    trained_with = saved["train_cfg"].get("optimizer", "adamw")  # checkpoints from before the option: AdamW
    if trained_with != cfg.optimizer:  # the optimizer state would not fit
        raise ResumeMismatchError(
            f"{path} was trained with train.optimizer {trained_with!r}, not {cfg.optimizer!r}: resume it with "
            f"--train.optimizer {trained_with}, or use a new output dir")
    changed = [k for k in RESUME_SENSITIVE
               if k in saved["train_cfg"] and _plain(saved["train_cfg"][k]) != _plain(getattr(cfg, k))]
    if changed:
        warnings.warn(f"resuming {path} with changed train settings {changed}: the run continues, but will "
                      "not match an uninterrupted run", stacklevel=2)
    return path


def restore(path: Path | None, model, optimizer, loader: WindowLoader, state: dict, cfg: TrainConfig,
            env: Dist = Dist()) -> int | None:
    """Load checkpoint `path` into model/optimizer/loader/state/RNG; its step, or None for a fresh run."""
    if path is None:
        return None
    saved = ckpt.load_train_checkpoint(path, model, optimizer, env=env)
    for group in optimizer.param_groups:  # the saved state carries the old hyperparameters: apply today's
        group.update(betas=tuple(cfg.betas), eps=cfg.eps)
    for i, group in enumerate(optimizer.param_groups):  # groups flagged "decay" (older checkpoints: group 0)
        group["weight_decay"] = cfg.weight_decay if group.get("decay", i == 0) else 0.0
    if saved["loader"]["batch_size"] == loader.batch_size:
        loader.load_state_dict(saved["loader"])
    else:  # a new batch size cannot continue the same permutation walk exactly; start the next epoch
        loader.load_state_dict({**saved["loader"], "epoch": saved["loader"]["epoch"] + 1, "position": 0})
    for key in ("step", "tokens", "elapsed_s", "planned_steps"):
        state[key] = saved[key]
    state["decay_start"] = saved.get("decay_start")  # absent in checkpoints from before wsd
    state["timing"] = dict(saved.get("timing", state["timing"]))
    if env.is_main:
        saved_ranks = len(saved["rng"])
        print(f"resuming from {path} (step {saved['step']}, {saved['tokens']:,} tokens"
              f"{f', saved by {saved_ranks} ranks, now {env.world_size}' if saved_ranks != env.world_size else ''})",
              file=sys.stderr)
    return saved["step"]


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
