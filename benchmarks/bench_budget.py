"""Does a wall-clock training budget survive a busy machine? A stall injected where the cosine plan is timed.

`lightcoder quickstart` trains for whatever minutes are left (train.max_minutes). With the "cosine"
schedule the number of steps is planned once, from the time of steps 10..30; a machine that is busy
for those seconds (another process, a swap, a slow disk) makes the plan far too short, and the rest of
the budget is lost. The "wsd" schedule (the default) fixes the decay only after 80 % of the minutes,
from the median step time of recent log intervals, so a stall costs only its own length.

Each row trains the run's model on the run's packed windows (RUN/shards from `make quickstart`, or
any `lightcoder pack` output) for --minutes, with one --stall-s sleep injected before step
--stall-step, and reports the share of the budget the run trained for and its steps. A row without a
stall is the reference. Rows are independent runs in temp dirs.

    .venv/bin/python benchmarks/bench_budget.py --run run/quickstart --minutes 2 --stall-s 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from lightcoder.config import load_run_config
from lightcoder.stages import model_config_for_run
from lightcoder.train.loader import WindowLoader
from lightcoder.train.loop import train


def run_row(run: Path, schedule: str, minutes: float, stall_s: float, stall_step: int) -> dict:
    cfg = load_run_config(run)
    cfg.train.schedule, cfg.train.max_minutes = schedule, minutes
    cfg.train.max_steps = cfg.train.max_tokens = 0
    cfg.train.tensorboard, cfg.train.ckpt_every, cfg.train.export_hf = False, 0, "final"
    original = WindowLoader.next_batch
    calls = {"n": 0}

    def stalling(self):
        calls["n"] += 1
        if stall_s and calls["n"] == stall_step:
            time.sleep(stall_s)
        return original(self)

    WindowLoader.next_batch = stalling
    try:
        with tempfile.TemporaryDirectory() as out:
            summary = train(cfg.train, model_config_for_run(cfg, run), shards_dir=run / "shards",
                            tokenizer_dir=run / "tokenizer", out_dir=out)
    finally:
        WindowLoader.next_batch = original
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=Path("run/quickstart"), help="a run dir with shards/ and tokenizer/")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per row (default 2)")
    p.add_argument("--stall-s", type=float, default=20.0, help="seconds of the injected stall (default 20)")
    p.add_argument("--stall-step", type=int, default=15, help="the stall happens before this step (default 15)")
    args = p.parse_args()
    if not (args.run / "shards").is_dir():
        print(f"no packed shards in {args.run}: run `make quickstart` (or lightcoder pack --out RUN) first",
              file=sys.stderr)
        return 1
    rows = []
    for schedule in ("wsd", "cosine"):
        for stall in (0.0, args.stall_s):
            s = run_row(args.run, schedule, args.minutes, stall, args.stall_step)
            rows.append((schedule, stall, s["elapsed_s"] / (60 * args.minutes), s["steps"], s["stop_reason"]))
            print(f"  {schedule} stall {stall:g} s: {s['steps']} steps, {s['elapsed_s']:.0f} s", file=sys.stderr)
    print(f"\nbudget {args.minutes:g} min, stall {args.stall_s:g} s before step {args.stall_step}\n")
    print("| schedule | stall (s) | budget used | steps | steps vs no stall | stopped by |")
    print("|---|---:|---:|---:|---:|---|")
    base = {sched: steps for sched, stall, _, steps, _ in rows if stall == 0}
    for schedule, stall, used, steps, reason in rows:
        print(f"| {schedule} | {stall:g} | {100 * used:.1f} % | {steps} | {steps / base[schedule]:.2f} | {reason} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
