"""`lightcoder quickstart`: every stage end to end on the embedded default corpus, within a time budget.

The corpus defaults to the Python standard library of the running interpreter (each top-level
package or module is one repository). Data, tokenizer and packing take a minute or two; training
gets what is left of the budget after reserving time for evaluation; the report is printed and
written to RUN/report.md. Rerunning the same command resumes: finished stages are skipped and
training continues from its newest checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lightcoder.config import RunConfig
from lightcoder.stages import (
    prepare_run_dir, stage_data, stage_eval, stage_pack, stage_report, stage_tokenizer, stage_train,
)

EVAL_RESERVE_MINUTES = 2.5  # 240 FIM tasks x 2 models x <= 128 tokens + bits per byte (~30-40 s a model)
# + HumanEval 8 x 64 and SantaCoder-FIM 8 x 16 tokens for the trained model (~25 s) + loading
MIN_TRAIN_MINUTES = 1.0


def run_quickstart(cfg: RunConfig, run_dir: Path, *, minutes: float, force: bool = False) -> str:
    started = time.time()
    prepare_run_dir(run_dir)
    print(f"lightcoder quickstart -> {run_dir} (budget {minutes:g} min)", file=sys.stderr)
    stage_data(cfg, run_dir, force=force)
    stage_tokenizer(cfg, run_dir, force=force)
    stage_pack(cfg, run_dir, force=force)
    clock_budget = cfg.train.max_minutes == 0 and cfg.train.max_steps == 0 and cfg.train.max_tokens == 0
    if clock_budget and not force and (run_dir / "train_summary.json").is_file():
        # training finished (the summary is written only then): a plain rerun, e.g. to redo a failed
        # evaluation, must not resume it under a budget recomputed from this call's clock (an explicit
        # --train.max_steps / max_tokens / max_minutes still trains on)
        print("train: finished earlier (train_summary.json); skipped", file=sys.stderr)
    else:
        if clock_budget:
            spent = (time.time() - started) / 60
            cfg.train.max_minutes = max(MIN_TRAIN_MINUTES, minutes - spent - EVAL_RESERVE_MINUTES)
            print(f"training budget: {cfg.train.max_minutes:.1f} min", file=sys.stderr)
        stage_train(cfg, run_dir, force=force)
    stage_eval(cfg, run_dir, force=force)
    report = stage_report(cfg, run_dir, started=started)
    print(report)
    print(f"report written to {run_dir / 'report.md'}; try:\n"
          f"  lightcoder complete {run_dir} --prefix-file a.py --suffix-file b.py", file=sys.stderr)
    return report
