"""Why completions miss the hole's length: does the model know a one-line hole from a block?

    python benchmarks/stop_diagnostics.py --run run/quickstart

Two looks at a trained run, per task type of its held-out FIM tasks (RUN/eval/tasks.jsonl):

- **teacher-forced**: the prompt the eval builds, plus the reference middle's first line; the model's
  probability of `</s>` next, and how often `</s>` is its top choice. Stopping there is right for a
  one-line reference and wrong for a block (whose first line is a header or its first statement).
  The AUC says how well that probability ranks one-line holes above multi-line ones (0.5: no signal;
  below 0.5: it wants to stop more where it should go on);
- **generated**: from the run's eval samples (RUN/eval/trained/samples.jsonl, greedy as scored),
  the mean lines written against the reference's, and the share whose first line opens a block
  (ends with `:`, `{` or `(`), which commits the model to writing a body.

The numbers in docs/evaluation.md ("Why lengths miss") come from this script.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import torch

from lightcoder.eval.runner import read_rows
from lightcoder.infer.completer import Completer

OPENS_BLOCK = (":", "{", "(")


def first_line_stop(completer: Completer, task: dict) -> tuple[float, bool] | None:
    """P(</s>) after the prompt + the reference's first line, and whether </s> is the top id there
    (None: the first line is blank)."""
    first = task["middle"].split("\n", 1)[0]
    if not first.strip():
        return None
    prompt = completer.build(task["prefix"], task["suffix"], path=task["path"], mode="spm",
                             max_new_tokens=128, fim=True)
    ids = torch.tensor([prompt + completer.tokenizer.encode(first)])
    with torch.inference_mode():
        logits = completer.model(ids)[0, -1].float()
    eos = completer.tokenizer.eos_id
    return math.exp(torch.log_softmax(logits, -1)[eos].item()), int(logits.argmax()) == eos


def ranking_auc(positives: list[float], negatives: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def line_count(text: str) -> int:
    return len(text.strip("\n").split("\n")) if text.strip() else 0


def generated_shapes(run: Path, tasks: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per type: mean lines generated and in the reference, % whose first line opens a block."""
    rows = defaultdict(list)
    for sample in read_rows(run / "eval" / "trained" / "samples.jsonl")[1]:  # the header (eval config) apart
        if sample["task_id"] not in tasks:
            continue
        text, task = sample["completion"], tasks[sample["task_id"]]
        opens = text.strip("\n").split("\n", 1)[0].rstrip().endswith(OPENS_BLOCK)
        rows[task["task_type"]].append((line_count(text), line_count(task["middle"]), opens))
    return {kind: {"lines": sum(r[0] for r in v) / len(v), "ref_lines": sum(r[1] for r in v) / len(v),
                   "opens_block": 100.0 * sum(r[2] for r in v) / len(v)} for kind, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("run/quickstart"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = {t["task_id"]: t for t in map(json.loads, open(args.run / "eval" / "tasks.jsonl"))}
    completer = Completer.load(args.run)
    by_type, one_line, multi_line = defaultdict(list), [], []
    for task in tasks.values():
        probed = first_line_stop(completer, task)
        if probed is None:
            continue
        by_type[task["task_type"]].append(probed)
        (multi_line if "\n" in task["middle"].strip("\n") else one_line).append(probed[0])
    shapes = generated_shapes(args.run, tasks)
    print("| task type | tasks | P(</s>) after the reference's first line | </s> on top | lines written : reference "
          "| first line opens a block |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, probed in by_type.items():
        s = shapes.get(kind, {})
        mean_p, top = sum(p for p, _ in probed) / len(probed), sum(on_top for _, on_top in probed)
        print(f"| {kind} | {len(probed)} | {mean_p:.2f} | {top} | "
              f"{s.get('lines', float('nan')):.1f} : {s.get('ref_lines', float('nan')):.1f} | "
              f"{s.get('opens_block', float('nan')):.0f} % |")
    if one_line and multi_line:
        print(f"\none-line references: {len(one_line)}, mean P(</s>) {sum(one_line) / len(one_line):.2f}; "
              f"multi-line: {len(multi_line)}, {sum(multi_line) / len(multi_line):.2f}; "
              f"AUC (one-line above multi-line) {ranking_auc(one_line, multi_line):.2f}")


if __name__ == "__main__":
    main()
