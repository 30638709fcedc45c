"""Why completions miss the hole's length: does the model know a one-line hole from a block?

    python benchmarks/stop_diagnostics.py --run run/quickstart

Two looks at a trained run, per task type of its held-out FIM tasks (RUN/eval/tasks.jsonl):

- **teacher-forced**: the prompt the eval builds, plus the reference middle's first line; how much of the
  model's probability goes to ending the middle there rather than going on to a next line (the **stop
  share**). Stopping there is right for a one-line reference and wrong for a block. The AUC says how well
  the share ranks one-line holes above multi-line ones (0.5: no signal). The share compares whole paths,
  because the tokenizer glues a line's closing punctuation to its newline ("):\n" is one token): a middle
  that ends at "f(x)" ends with ")" + </s>, while going on starts with ")\n". So P(</s>) right after the
  line's own tokens (also printed) is not the stop decision: after an unglued ":" the only way on that the
  model ever saw is </s>, which made that number look higher after block headers than after single lines;
- **generated**: from the run's eval samples (RUN/eval/trained/samples.jsonl, greedy as scored),
  the mean lines written against the reference's, and the share whose first line opens a block
  (ends with `:`, `{` or `(`), which commits the model to writing a body.

The AUC is also split by the multi-line reference's first line: after a header the model can tell from the line
itself that a body must follow; after a simple line only the prefix and suffix can tell it that more comes.

`--swap-suffixes` gives each task the suffix of the next task of its type: where the shares do not move, the
model decides to stop without reading the suffix. `--mode psm` asks the same with PSM prompts (the middle token right before the middle, not before the
prefix); `--split train` cuts the same kinds of tasks from the files the model trained on (does it stop
better on code it has seen?). The numbers in docs/evaluation.md ("Why lengths miss") come from this script.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections import defaultdict
from pathlib import Path

import torch

from lightcoder.data.records import read_corpus
from lightcoder.eval.builders import build_fim_tasks
from lightcoder.eval.runner import read_rows
from lightcoder.infer.completer import Completer

OPENS_BLOCK = (":", "{", "(")


def log_prob(completer: Completer, prompt: list[int], ids: list[int]) -> float:
    """log P(ids | prompt) under the model (the prompt's oldest ids dropped past the model's context)."""
    x = torch.tensor([(prompt + ids)[-completer.model.cfg.max_seq_len:]])
    with torch.inference_mode():
        logp = torch.log_softmax(completer.model(x)[0, -len(ids) - 1 : -1].float(), -1)  # (len(ids), V)
    return float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum())


def first_line_stop(completer: Completer, task: dict, mode: str = "spm") -> tuple[float, float] | None:
    """(stop share, P(</s>) right after the line's tokens) at the end of the reference's first line; None
    when that line is blank. The stop share is P(the middle ends after the line) / P(it ends or goes on to a
    new line), over whole token paths: with the cursor at a line's start (the middle holds whole lines,
    HumanEval-infilling) ending is line + newline + </s>; with the cursor after the indentation (FIM-Eval)
    it is the line + </s>, against the line + newline, which may tokenize differently."""
    first = task["middle"].split("\n", 1)[0]
    if not first.strip():
        return None
    tok, eos = completer.tokenizer, completer.tokenizer.eos_id
    prompt = completer.build(task["prefix"], task["suffix"], path=task["path"], mode=mode,
                             max_new_tokens=128, fim=True)
    line, line_nl = tok.encode(first), tok.encode(first + "\n")
    naive = math.exp(log_prob(completer, prompt, line + [eos]) - log_prob(completer, prompt, line))
    if task["prefix"].endswith("\n") or not task["prefix"]:  # whole lines: the newline is in the middle
        go_on = log_prob(completer, prompt, line_nl)
        share = math.exp(log_prob(completer, prompt, line_nl + [eos]) - go_on)
    else:
        stop, go_on = log_prob(completer, prompt, line + [eos]), log_prob(completer, prompt, line_nl)
        share = 1.0 / (1.0 + math.exp(go_on - stop))
    return share, naive


def ranking_auc(positives: list[float], negatives: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def first_line_kind(middle: str) -> str:
    """Whether a middle's first line opens a block (a header that must have a body) or is a simple line."""
    first = middle.strip("\n").split("\n", 1)[0].rstrip()
    return "opens a block" if first.endswith(OPENS_BLOCK) else "is a simple line"


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


def read_tasks(run: Path, split: str) -> dict[str, dict]:
    """The run's held-out eval tasks (test), or tasks of the same kinds and settings cut from its train split."""
    if split == "test":
        return {t["task_id"]: t for t in map(json.loads, open(run / "eval" / "tasks.jsonl"))}
    cfg = json.loads((run / "config.json").read_text())["eval"]
    built = build_fim_tasks(read_corpus(run / "data", "train"), per_type=cfg["per_type"], seed=cfg["seed"],
                            max_context_chars=cfg["max_context_chars"])
    return {t.task_id: dataclasses.asdict(t) for t in built}


def swap_suffixes(tasks: dict[str, dict]) -> dict[str, dict]:
    """Each task with the suffix of the next task of the same type (the last takes the first's)."""
    by_type = defaultdict(list)
    for task_id, task in tasks.items():
        by_type[task["task_type"]].append(task_id)
    swapped = {}
    for ids in by_type.values():
        for task_id, donor in zip(ids, ids[1:] + ids[:1]):
            swapped[task_id] = {**tasks[task_id], "suffix": tasks[donor]["suffix"]}
    return swapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("run/quickstart"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=("spm", "psm"), default="spm", help="the prompts' layout (the eval's: spm)")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="train: the same kinds of tasks cut from the files the model trained on")
    parser.add_argument("--swap-suffixes", action="store_true",
                        help="give each task another task's suffix (same type): does the stop decision read it?")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = read_tasks(args.run, args.split)
    tasks = swap_suffixes(tasks) if args.swap_suffixes else tasks
    completer = Completer.load(args.run)
    by_type, one_line, multi_line = defaultdict(list), [], defaultdict(list)
    for task in tasks.values():
        probed = first_line_stop(completer, task, args.mode)
        if probed is None:
            continue
        by_type[task["task_type"]].append(probed)
        if "\n" in task["middle"].strip("\n"):
            multi_line[first_line_kind(task["middle"])].append(probed[0])
        else:
            one_line.append(probed[0])
    shapes = generated_shapes(args.run, tasks) if args.split == "test" and not args.swap_suffixes else {}
    print("| task type | tasks | stop share after the reference's first line | P(</s>) after its tokens "
          "| lines written : reference | first line opens a block |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, probed in by_type.items():
        s = shapes.get(kind, {})
        share, naive = (sum(p[i] for p in probed) / len(probed) for i in (0, 1))
        written = f"{s['lines']:.1f} : {s['ref_lines']:.1f} | {s['opens_block']:.0f} %" if s else "- | -"
        print(f"| {kind} | {len(probed)} | {share:.2f} | {naive:.2f} | {written} |")
    every_multi = [share for shares in multi_line.values() for share in shares]
    if one_line and every_multi:
        print(f"\none-line references: {len(one_line)}, mean stop share {sum(one_line) / len(one_line):.2f}; "
              f"multi-line: {len(every_multi)}, {sum(every_multi) / len(every_multi):.2f}; "
              f"AUC (one-line above multi-line) {ranking_auc(one_line, every_multi):.2f}")
        for kind, shares in sorted(multi_line.items()):  # where the ranking comes from: a header, or the context
            print(f"  multi-line whose first line {kind}: {len(shares)}, mean stop share "
                  f"{sum(shares) / len(shares):.2f}, AUC {ranking_auc(one_line, shares):.2f}")


if __name__ == "__main__":
    main()
