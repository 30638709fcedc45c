"""How long a run trains, and when its learning rate decays: step, token and wall-clock budgets.

Budgets (TrainConfig): max_steps, max_tokens (both known up front), max_minutes (wall clock, summed
over resumes), or one epoch when none is set. With max_minutes the number of steps is not known at
the start, and a machine that is briefly busy must not decide it. Two schedules:

- "wsd" (warmup-stable-decay, the default): the learning rate holds its peak after warmup, and the
  decay starts when `1 - decay_fraction` of the wall-clock budget has passed. Only then is the
  number of decay steps fixed, from the median step time of the recent log intervals, so a stall
  before it costs exactly its own length, and one stalled interval does not move the median.
- "cosine": the plan of old: after PLAN_WARMUP_STEPS + plan_after_steps steps, the total is fixed
  once from the time those steps took (a stall during that window shortens the whole run).

The decision (decay start and planned total) is saved in train_state.pt, so a resumed run follows it.

Example (wsd, 10 minutes, decay_fraction 0.2): steps 0..k run at the peak until minute 8; at the log
step after minute 8 the median step takes 0.4 s, so ~300 decay steps are planned and the run stops
after them (or at minute 10, whichever comes first).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from lightcoder.train.config import TrainConfig

PLAN_WARMUP_STEPS = 10  # cosine + max_minutes: steps run before the timing that plans the total
RECENT_INTERVALS = 9  # log intervals whose median step time plans a wsd decay


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


def keep_running_decay(plan: dict, cfg: TrainConfig, budget: int | None) -> dict:
    """A time plan for a run that also has a step or token budget: if that budget's own wsd decay started
    earlier, the plan keeps that start, so the learning rate never climbs back to its peak mid-decay.

    Example (warmup 10, decay_fraction 0.2, max_steps 1000: the decay starts at step 802): a plan made at
    step 850 with {"decay_start": 850} becomes {"decay_start": 802}.
    """
    from lightcoder.train.optim import wsd_decay_start

    if cfg.schedule != "wsd" or budget is None or plan.get("decay_start") is None:
        return plan
    return {**plan, "decay_start": min(plan["decay_start"], wsd_decay_start(budget, cfg))}


class TimePlanner:
    """Fixes a max_minutes run's length from its clock (module docstring); call `observe` at log steps.

    `observe(step, clock_s, interval_step_s, timing)` returns None, or the plan once it is decided:
    {"planned_steps": n, "decay_start": step or None}. `interval_step_s` is the mean seconds per step
    of the log interval that just ended, evals and checkpoints left out; timing = {"eval_s", "ckpt_s"}.
    """

    def __init__(self, cfg: TrainConfig, start_step: int) -> None:
        self.cfg = cfg
        self.recent: deque[float] = deque(maxlen=RECENT_INTERVALS)
        self.plan_from = start_step + PLAN_WARMUP_STEPS  # early steps are slow (allocation, kernels)
        self.plan_at = self.plan_from + cfg.plan_after_steps

    def observe(self, step: int, clock_s: float, interval_step_s: float, timing: dict) -> dict | None:
        if step > self.plan_from:  # the first interval(s) pay for allocation and kernel selection
            self.recent.append(interval_step_s)
        if self.cfg.schedule == "cosine":
            return self._cosine(step, clock_s, timing)
        if clock_s < (1.0 - self.cfg.decay_fraction) * self.cfg.max_minutes * 60:
            return None
        step_s = statistics.median(self.recent or [interval_step_s])  # a very short run: no warm interval yet
        return {"planned_steps": plan_steps(step, clock_s, step_s, self.cfg, **timing), "decay_start": step}

    def _cosine(self, step: int, clock_s: float, timing: dict) -> dict | None:
        if step < self.plan_at or not self.recent:
            return None
        step_s = statistics.fmean(list(self.recent)[-max(1, self.cfg.plan_after_steps // self.cfg.log_every):])
        return {"planned_steps": plan_steps(step, clock_s, step_s, self.cfg, **timing), "decay_start": None}
