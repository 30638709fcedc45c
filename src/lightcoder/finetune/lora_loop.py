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

import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightcoder.finetune.base import Base
from lightcoder.finetune.config import FinetuneConfig
from lightcoder.finetune.lora import add_lora, quantize_4bit, save_adapter, trainable_parameters
from lightcoder.model.hf import load_checkpoint
from lightcoder.model.llama import document_ids_from_tokens
from lightcoder.shards import open_mask, open_shard, read_index
from lightcoder.train.budget import TimePlanner, budget_steps, schedule_steps, stop_reason, total_steps
from lightcoder.train.loader import WindowLoader, eval_batches
from lightcoder.train.loop import interrupt_guard, truncate_metrics
from lightcoder.train.optim import build_optimizer, lr_at, set_lr
from lightcoder.train.telemetry import MetricsLog
from lightcoder.windows import PROMPT, TARGET

STATE_FILE = "train_state.pt"


def load_trainable(base: Base, cfg: FinetuneConfig, device: torch.device):
    """The base (frozen; 4-bit for QLoRA) wrapped with fresh LoRA layers, on `device`."""
    model, _ = load_checkpoint(base.path, device="cpu")
    model.attention_impl = cfg.train.attention
    if cfg.method == "qlora":
        model = quantize_4bit(model, device)
    else:
        model = model.to(device)
        model.init_rope()
    return add_lora(model, cfg.lora)


def lora_step(model, optimizer, inputs, targets, *, autocast, grad_clip: float, grad_accum: int,
              doc_start: int | None) -> torch.Tensor:
    """One optimizer step in grad_accum micro-batches; returns the mean loss (device tensor)."""
    total = torch.zeros((), device=inputs.device)
    for x, y in zip(inputs.chunk(grad_accum), targets.chunk(grad_accum)):
        doc = document_ids_from_tokens(x, doc_start) if doc_start is not None else None  # (b, T)
        with autocast:
            _, loss = model(x, y, document_ids=doc, fused_loss=True)
        (loss / grad_accum).backward()
        total += loss.detach()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / grad_accum


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
    done = sorted(p for p in ckpt_dir.glob("step_*") if (p / STATE_FILE).is_file()) if ckpt_dir.is_dir() else []
    return done[-1] if done else None


def train_lora(base: Base, cfg: FinetuneConfig, shards: Path, run_dir: Path, meta: dict) -> dict:
    """Train (or resume) the adapter; returns the summary. The final adapter is RUN/adapter/."""
    tcfg = cfg.train
    device = torch.device("cuda" if tcfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    torch.manual_seed(tcfg.seed)
    random.seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    loss_from = PROMPT if tcfg.fim_prompt_loss else TARGET
    loader = WindowLoader(open_shard(shards, "train"), tcfg.batch_size, seed=tcfg.seed, device=device,
                          masks=open_mask(shards, "train"), loss_from=loss_from)
    has_valid = read_index(shards)["splits"].get("valid", {}).get("num_windows", 0) > 0
    val = eval_batches(open_shard(shards, "valid"), tcfg.batch_size, tcfg.eval_batches, device,
                       open_mask(shards, "valid"), loss_from) if has_valid else []
    doc_start = base.doc_start_id if tcfg.document_mask else None
    model = load_trainable(base, cfg, device)
    trainable, total = trainable_parameters(model)
    print(f"LoRA r={cfg.lora.r} on {', '.join(cfg.lora.targets)}: {trainable:,} trainable of {total:,} "
          f"parameters ({100 * trainable / total:.3f} %)", file=sys.stderr)
    optimizer = build_optimizer(model, tcfg)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tcfg.dtype == "bf16")
    tokens_per_step = tcfg.batch_size * (loader.seq_len - 1)
    budget = budget_steps(tcfg, tokens_per_step, loader.batches_per_epoch)
    state = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "planned_steps": None, "decay_start": None,
             "timing": {"eval_s": 0.0, "ckpt_s": 0.0}, "initial_val_loss": None}
    ckpt_dir = run_dir / "ckpt"
    resumed = _restore(newest_checkpoint(ckpt_dir), model, optimizer, loader, state)
    if resumed is None:
        model.eval()  # no LoRA dropout in the baseline's validation loss
        state["initial_val_loss"] = validate(model, val, autocast, doc_start)
    truncate_metrics(run_dir / "metrics.jsonl", state["step"] if resumed is not None else -1)

    def save(step: int) -> None:
        extra = {STATE_FILE: {**state, "optimizer": optimizer.state_dict(), "loader": loader.state_dict(),
                              "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                                      "numpy": np.random.get_state()}}}
        save_adapter(model, cfg.lora, ckpt_dir / f"step_{step:06d}", meta=meta, extra_files=extra)
        for old in sorted(p for p in ckpt_dir.glob("step_*") if (p / STATE_FILE).is_file())[:-tcfg.keep_checkpoints]:
            import shutil

            shutil.rmtree(old, ignore_errors=True)

    planner = TimePlanner(tcfg, state["step"]) if tcfg.max_minutes else None
    elapsed_before, t_session = state["elapsed_s"], time.perf_counter()
    t_interval, interval_steps, loss_sum, last_loss, val_loss = time.perf_counter(), 0, 0.0, None, None
    stop = stop_reason(state, tcfg, budget)
    model.train()
    with MetricsLog(run_dir, enabled=True, tensorboard=tcfg.tensorboard) as metrics, interrupt_guard() as hit, \
            tqdm(total=total_steps(state, budget), initial=state["step"], unit="step", desc="finetune lora",
                 dynamic_ncols=True, disable=None, file=sys.stderr) as bar:
        while stop is None:
            step = state["step"]
            set_lr(optimizer, lr_at(step, tcfg, schedule_steps(state, tcfg, budget),
                                    None if tcfg.schedule_steps else state["decay_start"]))
            inputs, targets = loader.next_batch()
            loss = lora_step(model, optimizer, inputs, targets, autocast=autocast, grad_clip=tcfg.grad_clip,
                             grad_accum=tcfg.grad_accum, doc_start=doc_start)
            state["step"], state["tokens"] = step + 1, state["tokens"] + tokens_per_step
            state["elapsed_s"] = elapsed_before + time.perf_counter() - t_session
            loss_sum, interval_steps = loss_sum + float(loss), interval_steps + 1
            bar.update(1)
            stop = stop_reason(state, tcfg, budget)
            if state["step"] % tcfg.log_every == 0 or stop is not None:
                now = time.perf_counter()
                last_loss, step_s = loss_sum / interval_steps, (now - t_interval) / interval_steps
                if planner is not None and state["planned_steps"] is None and stop is None:
                    plan = planner.observe(state["step"], state["elapsed_s"], step_s, state["timing"])
                    if plan is not None:
                        state.update(plan)
                        bar.total = total_steps(state, budget)
                metrics.log({"step": state["step"], "loss": last_loss, "lr": optimizer.param_groups[0]["lr"],
                             "tokens": state["tokens"], "tokens_per_s": round(tokens_per_step / step_s, 1),
                             "elapsed_s": round(state["elapsed_s"], 3)})
                bar.set_postfix(loss=f"{last_loss:.3f}", refresh=False)
                t_interval, interval_steps, loss_sum = now, 0, 0.0
            if (tcfg.eval_every and state["step"] % tcfg.eval_every == 0) or stop is not None:
                t0 = time.perf_counter()
                model.eval()
                val_loss = validate(model, val, autocast, doc_start)
                model.train()
                if val_loss is not None:
                    metrics.log({"step": state["step"], "val_loss": val_loss, "tokens": state["tokens"]})
                state["timing"]["eval_s"] = time.perf_counter() - t0
            if stop is None and hit["hit"]:
                stop = "interrupted"
            if (tcfg.ckpt_every and state["step"] % tcfg.ckpt_every == 0) or stop is not None:
                t0 = time.perf_counter()
                save(state["step"])
                state["timing"]["ckpt_s"] = time.perf_counter() - t0
    if stop == "interrupted":
        raise KeyboardInterrupt(f"fine-tuning interrupted; adapter checkpoint saved at step {state['step']}")
    save_adapter(model, cfg.lora, run_dir / "adapter", meta=meta)
    return {"method": cfg.method, "steps": state["step"], "tokens": state["tokens"], "stop_reason": stop,
            "train_loss": last_loss, "val_loss": val_loss, "initial_val_loss": state["initial_val_loss"],
            "trainable_params": trainable, "total_params": total, "elapsed_s": round(state["elapsed_s"], 1),
            "device": str(device), "adapter": str(run_dir / "adapter")}


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
    for key in ("step", "tokens", "elapsed_s", "planned_steps", "decay_start", "timing", "initial_val_loss"):
        state[key] = saved[key]
    print(f"resuming the adapter from {path} (step {saved['step']})", file=sys.stderr)
    return saved["step"]
