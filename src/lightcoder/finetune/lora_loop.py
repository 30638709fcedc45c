"""LoRA (and QLoRA) training: the base frozen, the adapter trained on the packed windows, one process.

The pieces are the pretraining loop's (train/): WindowLoader and its resumable position, the loss
roles of context-level FIM (loss on middles unless train.fim_prompt_loss), lr_at with warmup +
wsd/cosine, budgets (max_steps / max_tokens / max_minutes with TimePlanner, else one epoch),
MetricsLog (metrics.jsonl + TensorBoard), the Ctrl-C guard. What differs is the state: a LoRA
checkpoint is the adapter in peft's format plus `train_state.pt` (optimizer, loader, RNG, plan), a
few MB instead of the base's GB, written atomically as RUN/ckpt/step_N/:

    adapter_config.json  adapter_model.safetensors  lightcoder.json  train_state.pt

Ctrl-C once: the step finishes, a checkpoint is written, KeyboardInterrupt; the same command resumes.
Full fine-tuning goes through train/loop.py instead (FSDP2 under torchrun included).
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightcoder.finetune.base import Base
from lightcoder.finetune.config import FinetuneConfig
from lightcoder.finetune.lora import add_lora, quantize_4bit, save_adapter, trainable_parameters
from lightcoder.infer.weight_dtype import cast_weights, describe_dtype
from lightcoder.model.hf import load_checkpoint
from lightcoder.model.llama import document_ids_from_tokens
from lightcoder.shards import open_mask, open_shard, read_index
from lightcoder.train.budget import (
    TimePlanner, budget_steps, keep_running_decay, schedule_steps, stop_reason, total_steps,
)
from lightcoder.train.loader import WindowLoader, eval_batches
from lightcoder.train.loop import interrupt_guard, truncate_metrics
from lightcoder.train.optim import build_optimizer, lr_at, set_lr
from lightcoder.train.precision import resolve_dtype
from lightcoder.train.distributed import Dist
from lightcoder.train.telemetry import Interval, MetricsLog
from lightcoder.windows import PROMPT, TARGET

STATE_FILE = "train_state.pt"


def load_trainable(base: Base, cfg: FinetuneConfig, device: torch.device, base_dtype: str = "auto"):
    """The base (frozen; 4-bit for QLoRA) wrapped with fresh LoRA layers, on `device`; with the dtype its
    weights are in ("float32", ...: `base_dtype`, "auto" = infer/weight_dtype.py's choice; a resumed run
    passes the one it trained in)."""
    model, _ = load_checkpoint(base.path, device="cpu")
    model.attention_impl = cfg.train.attention
    if cfg.method == "qlora":
        model = quantize_4bit(model, device)
    else:
        model = model.to(device)
        model.init_rope()
        if (why := cast_weights(model, device, base_dtype)) != "as stored":  # a bf16 base on a slow CPU: fp32
            print(f"finetune: the frozen base has {describe_dtype(model, why)}", file=sys.stderr)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return add_lora(model, cfg.lora), dtype


def lora_step(model, optimizer, inputs, targets, *, autocast, grad_clip: float, grad_accum: int,
              doc_start: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step in grad_accum micro-batches; returns (mean loss, grad norm before clipping) as
    device tensors, as train/loop.optimizer_step (no host sync)."""
    total = torch.zeros((), device=inputs.device)
    for x, y in zip(inputs.chunk(grad_accum), targets.chunk(grad_accum)):
        doc = document_ids_from_tokens(x, doc_start) if doc_start is not None else None  # (b, T)
        with autocast:
            _, loss = model(x, y, document_ids=doc, fused_loss=True)
        (loss / grad_accum).backward()
        total += loss.detach()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / grad_accum, norm


@torch.no_grad()
def validate(model, batches, autocast, doc_start: int | None) -> float | None:
    """Mean loss per target token over the fixed validation batches (None without any)."""
    loss_sum, count = 0.0, 0
    for x, y in batches:
        doc = document_ids_from_tokens(x, doc_start) if doc_start is not None else None
        with autocast:
            _, loss = model(x, y, document_ids=doc, fused_loss=True)
        n = int((y != -100).sum())
        loss_sum, count = loss_sum + float(loss) * n, count + n
    return loss_sum / count if count else None


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    done = _complete_checkpoints(ckpt_dir)
    return done[-1] if done else None


def _complete_checkpoints(ckpt_dir: Path) -> list[Path]:
    """RUN/ckpt/step_N/ dirs with their train_state.pt written, oldest first."""
    return sorted(p for p in ckpt_dir.glob("step_*") if (p / STATE_FILE).is_file()) if ckpt_dir.is_dir() else []


SINGLE_PROCESS = Dist()  # LoRA trains in one process: the interval's means need no all-reduce


def train_lora(base: Base, cfg: FinetuneConfig, shards: Path, run_dir: Path, meta: dict) -> dict:
    """Train (or resume) the adapter; returns the summary. The final adapter is RUN/adapter/."""
    run = LoraSession.open(base, cfg, shards, run_dir, meta)
    tcfg, state = cfg.train, run.state
    stop = stop_reason(state, tcfg, run.budget)
    run.model.train()
    with MetricsLog(run_dir, enabled=True, tensorboard=tcfg.tensorboard) as run.metrics, \
            interrupt_guard() as hit, run.progress_bar() as run.bar:
        while stop is None:
            step = run.step()
            stop = stop_reason(state, tcfg, run.budget)
            if step % tcfg.log_every == 0 or stop is not None:
                run.log(stop)
            if (tcfg.eval_every and step % tcfg.eval_every == 0) or stop is not None:
                state["timing"]["eval_s"] = run.validate()
            if stop is None and hit["hit"]:
                stop = "interrupted"
            if (tcfg.ckpt_every and step % tcfg.ckpt_every == 0) or stop is not None:
                state["timing"]["ckpt_s"] = run.save(step)
    if stop == "interrupted":
        raise KeyboardInterrupt(f"fine-tuning interrupted; adapter checkpoint saved at step {state['step']}")
    save_adapter(run.model, cfg.lora, run_dir / "adapter", meta=meta)
    return run.summary(stop)


class LoraSession:
    """One train_lora call: the LoRA-wrapped model, optimizer, data and run state, with the steps that
    change them. `state` is what train_state.pt keeps; the rest is this session's clock and losses."""

    def __init__(self, cfg: FinetuneConfig, *, device: torch.device, model, optimizer, loader: WindowLoader,
                 val_batches: list, doc_start: int | None, state: dict, run_dir: Path, meta: dict):
        tcfg = cfg.train
        self.cfg, self.tcfg, self.device, self.run_dir, self.meta = cfg, tcfg, device, run_dir, meta
        self.model, self.optimizer, self.loader, self.val_batches = model, optimizer, loader, val_batches
        self.doc_start = doc_start  # the token that starts each packed document (block-causal masks), None: off
        self.state, self.ckpt_dir = state, run_dir / "ckpt"
        self.trainable, self.total = trainable_parameters(model)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=resolve_dtype(tcfg.dtype, device) == "bf16")
        self.tokens_per_step = tcfg.batch_size * (loader.seq_len - 1)  # positions with a loss per step
        self.budget = budget_steps(tcfg, self.tokens_per_step, loader.batches_per_epoch)
        self.last_loss = self.val_loss = None
        self.planner = self.interval = None  # set by `start_clock`, once the checkpoint is restored
        self.elapsed_before = self.t_session = 0.0
        self.metrics = self.bar = None  # set by `train_lora` for the loop's duration

    @classmethod
    def open(cls, base: Base, cfg: FinetuneConfig, shards: Path, run_dir: Path, meta: dict) -> LoraSession:
        """Seeds, data, the LoRA-wrapped base and its optimizer, then the newest adapter checkpoint (a fresh
        run measures the untrained adapter's val loss instead). The order fixes the RNG draws."""
        tcfg = cfg.train
        device = torch.device("cuda" if tcfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
        _seed(tcfg)
        loader, val_batches = _open_data(shards, tcfg, device)
        newest = newest_checkpoint(run_dir / "ckpt")
        model, base_dtype = load_trainable(base, cfg, device, _saved_base_dtype(newest))
        run = cls(cfg, device=device, model=model, optimizer=build_optimizer(model, tcfg), loader=loader,
                  val_batches=val_batches, doc_start=base.doc_start_id if tcfg.document_mask else None,
                  state=_fresh_state(base_dtype), run_dir=run_dir, meta=meta)
        print(f"LoRA r={cfg.lora.r} on {', '.join(cfg.lora.targets)}: {run.trainable:,} trainable of "
              f"{run.total:,} parameters ({100 * run.trainable / run.total:.3f} %)", file=sys.stderr)
        resumed = _restore(newest, model, run.optimizer, loader, run.state)
        if resumed is None:
            model.eval()  # no LoRA dropout in the baseline's validation loss
            run.state["initial_val_loss"] = validate(model, val_batches, run.autocast, run.doc_start)
        truncate_metrics(run_dir / "metrics.jsonl", run.state["step"] if resumed is not None else -1)
        run.start_clock()
        return run

    def start_clock(self) -> None:
        """Start the session's clock: elapsed_s counts wall time across resumes; the first log interval."""
        self.planner = TimePlanner(self.tcfg, self.state["step"]) if self.tcfg.max_minutes else None
        self.elapsed_before, self.t_session = self.state["elapsed_s"], time.perf_counter()
        self.interval = Interval(self.device)

    def progress_bar(self) -> tqdm:
        return tqdm(total=total_steps(self.state, self.budget), initial=self.state["step"], unit="step",
                    desc="finetune lora", dynamic_ncols=True, disable=None, file=sys.stderr)

    def step(self) -> int:
        """One optimizer step (B, T-1) at this step's learning rate; advances the counters; the new step."""
        tcfg, state = self.tcfg, self.state
        step = state["step"]
        set_lr(self.optimizer, lr_at(step, tcfg, schedule_steps(state, tcfg, self.budget),
                                     None if tcfg.schedule_steps else state["decay_start"]))
        inputs, targets = self.loader.next_batch()
        loss, grad_norm = lora_step(self.model, self.optimizer, inputs, targets, autocast=self.autocast,
                                    grad_clip=tcfg.grad_clip, grad_accum=tcfg.grad_accum, doc_start=self.doc_start)
        state["step"], state["tokens"] = step + 1, state["tokens"] + self.tokens_per_step
        state["elapsed_s"] = self.elapsed_before + time.perf_counter() - self.t_session
        self.interval.add(loss, grad_norm, self.tokens_per_step)
        self.bar.update(1)
        return state["step"]

    def log(self, stop: str | None) -> None:
        """Close the log interval: its mean loss, the time plan (max_minutes), one metrics row."""
        state = self.state
        self.last_loss, mean_norm, seconds, tokens = self.interval.close(SINGLE_PROCESS)
        step_s = seconds * self.tokens_per_step / max(1, tokens)
        if self.planner is not None and state["planned_steps"] is None and stop is None:
            plan = self.planner.observe(state["step"], state["elapsed_s"], step_s, state["timing"])
            if plan is not None:
                state.update(keep_running_decay(plan, self.tcfg, self.budget))  # never back to the peak LR
                self.bar.total = total_steps(state, self.budget)
        self.metrics.log({"step": state["step"], "loss": self.last_loss, "lr": self.optimizer.param_groups[0]["lr"],
                          "grad_norm": round(mean_norm, 4), "tokens": state["tokens"], "tokens_per_s": round(self.tokens_per_step / step_s, 1),
                          "elapsed_s": round(state["elapsed_s"], 3)})
        self.bar.set_postfix(loss=f"{self.last_loss:.3f}", refresh=False)

    def validate(self) -> float:
        """Val loss (dropout off) into self.val_loss and metrics.jsonl; the seconds spent."""
        t0 = time.perf_counter()
        self.model.eval()
        self.val_loss = validate(self.model, self.val_batches, self.autocast, self.doc_start)
        self.model.train()
        if self.val_loss is not None:
            self.metrics.log({"step": self.state["step"], "val_loss": self.val_loss, "tokens": self.state["tokens"]})
        return time.perf_counter() - t0

    def save(self, step: int) -> float:
        """Adapter checkpoint RUN/ckpt/step_N/ with train_state.pt, keeping the newest keep_checkpoints;
        the seconds spent."""
        t0 = time.perf_counter()
        extra = {STATE_FILE: {**self.state, "optimizer": self.optimizer.state_dict(),
                              "loader": self.loader.state_dict(),
                              "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                                      "numpy": np.random.get_state(),  # LoRA dropout draws on the GPU's
                                      **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available()
                                         else {})}}}
        save_adapter(self.model, self.cfg.lora, self.ckpt_dir / f"step_{step:06d}", meta=self.meta, extra_files=extra)
        for old in _complete_checkpoints(self.ckpt_dir)[:-self.tcfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return time.perf_counter() - t0

    def summary(self, stop: str | None) -> dict:
        """What `train_lora` returns: steps, losses, adapter size, where the adapter is."""
        state = self.state
        return {"method": self.cfg.method, "steps": state["step"], "tokens": state["tokens"], "stop_reason": stop,
                "train_loss": self.last_loss, "val_loss": self.val_loss, "initial_val_loss": state["initial_val_loss"],
                "trainable_params": self.trainable, "total_params": self.total,
                "elapsed_s": round(state["elapsed_s"], 1), "device": str(self.device),
                "adapter": str(self.run_dir / "adapter")}


def _seed(tcfg) -> None:
    """Threads and the torch / python / numpy seeds, before anything draws from them."""
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    torch.manual_seed(tcfg.seed)
    random.seed(tcfg.seed)
    np.random.seed(tcfg.seed)


def _open_data(shards: Path, tcfg, device: torch.device) -> tuple[WindowLoader, list]:
    """The train loader and the fixed validation batches ([] without a valid split); the loss is on
    middles, or on prompts too with train.fim_prompt_loss."""
    loss_from = PROMPT if tcfg.fim_prompt_loss else TARGET
    loader = WindowLoader(open_shard(shards, "train"), tcfg.batch_size, seed=tcfg.seed, device=device,
                          masks=open_mask(shards, "train"), loss_from=loss_from)
    has_valid = read_index(shards)["splits"].get("valid", {}).get("num_windows", 0) > 0
    val = eval_batches(open_shard(shards, "valid"), tcfg.batch_size, tcfg.eval_batches, device,
                       open_mask(shards, "valid"), loss_from) if has_valid else []
    return loader, val


def _fresh_state(base_dtype: str) -> dict:
    return {"step": 0, "tokens": 0, "elapsed_s": 0.0, "planned_steps": None, "decay_start": None,
            "timing": {"eval_s": 0.0, "ckpt_s": 0.0}, "initial_val_loss": None, "base_dtype": base_dtype}


def _saved_base_dtype(path: Path | None) -> str:
    """The dtype the frozen base trained in, from a LoRA checkpoint; "auto" for a fresh run (or a checkpoint
    from before it was recorded), so a resumed run computes exactly as before whatever the machine's memory."""
    if path is None:
        return "auto"
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False).get("base_dtype", "auto")


def _restore(path: Path | None, model, optimizer, loader: WindowLoader, state: dict) -> int | None:
    """Load a LoRA checkpoint into model/optimizer/loader/state; its step, or None for a fresh run."""
    if path is None:
        return None
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from lightcoder.finetune.lora import ADAPTER_WEIGHTS, from_hf_key

    saved = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    weights = {from_hf_key(k): v for k, v in load_file(path / ADAPTER_WEIGHTS).items()}
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(saved["optimizer"])
    loader.load_state_dict(saved["loader"])
    torch.set_rng_state(saved["rng"]["torch"])
    random.setstate(saved["rng"]["python"])
    np.random.set_state(saved["rng"]["numpy"])
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    for key in ("step", "tokens", "elapsed_s", "planned_steps", "decay_start", "timing", "initial_val_loss"):
        state[key] = saved[key]
    print(f"resuming the adapter from {path} (step {saved['step']})", file=sys.stderr)
    return saved["step"]
