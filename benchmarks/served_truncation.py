"""What the server's `truncate` modes do to a run's completions, per task type.

    python benchmarks/served_truncation.py --run run/quickstart [--run run/other ...]

The run's eval scores the raw greedy completion (no truncation), while `lightcoder serve` trims by default
(infer/truncation.py). Its two modes:
- `syntax` (the default): generation ends at the first line where prefix + completion + suffix parses
  (`StructureStop`: one statement), and the result is cut to the longest line prefix with the fewest parse
  errors (`trim_to_parse`);
- `trim`: generation ends where the model ends it, then the same cut.
Greedy decoding makes the served text a prefix of the recorded one, so this script replays both modes on
RUN/eval/trained/samples.jsonl (no model needed) and rescores: exact match, edit similarity, pred:ref length
and syntax validity. The numbers in docs/evaluation.md ("What the server's truncation does") come from it.
The replay checks the stop rule at every newline, the server once per generated token, so a token holding
two newlines can leave the served text one blank line longer: on 60 of run/quickstart's tasks completed both
ways, 59 replays equal the server's text and one differs by a trailing blank line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightcoder.eval.metrics import TOTAL, score_one, summarize, syntax_valid
from lightcoder.eval.runner import read_rows
from lightcoder.infer.truncation import StructureStop, trim_to_parse

MODES = ("none", "syntax", "trim")


def served_text(prefix: str, completion: str, suffix: str, language: str | None, mode: str) -> str:
    """The text a request with `truncate: mode` returns, given the raw greedy completion."""
    if mode == "none":
        return completion
    if mode == "syntax":
        stop = StructureStop(prefix, suffix, language)
        for i, ch in enumerate(completion):
            if ch == "\n" and stop.done(completion[: i + 1]):
                completion = completion[: i + 1]  # generation would have ended after this line
                break
    return trim_to_parse(prefix, completion, suffix, language)


def scored(task: dict, text: str) -> dict:
    row = score_one(text, task["middle"])
    row.update(task_type=task["task_type"],
               syntax_ok=syntax_valid(task["prefix"], text, task["suffix"], task.get("language"),
                                  reference=task["middle"]))
    return row


def compare(run: Path) -> dict[str, dict[str, dict]]:
    """{mode: summary} over the run's trained samples (summaries as eval.metrics.summarize)."""
    tasks = {t["task_id"]: t for t in map(json.loads, (run / "eval" / "tasks.jsonl").read_text().splitlines())}
    samples = read_rows(run / "eval" / "trained" / "samples.jsonl")[1]
    if not samples:
        raise SystemExit(f"no samples in {run}/eval/trained/samples.jsonl: run the eval stage first")
    rows: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for sample in samples:
        task = tasks[sample["task_id"]]
        for mode in MODES:
            text = served_text(task["prefix"], sample["completion"], task["suffix"], task.get("language"), mode)
            rows[mode].append(scored(task, text))
    return {mode: summarize(r) for mode, r in rows.items()}


def types_in_range(table: dict[str, dict]) -> int:
    return sum(0.7 <= s["len_ratio"] <= 1.4 for k, s in table.items() if k != TOTAL)


def print_table(run: Path, result: dict[str, dict[str, dict]]) -> None:
    print(f"\n{run} (cells: {' / '.join(MODES)})\n")
    print("| task type | n | EM | ES | length | syntax % |")
    print("|---|---:|---|---|---|---|")
    for kind, first in result["none"].items():
        cells = [[result[mode][kind][key] for mode in MODES] for key in ("em", "es", "len_ratio", "syntax")]
        em, es, length, syntax = (" / ".join(fmt.format(v) for v in values)
                                  for fmt, values in zip(("{:.1f}", "{:.1f}", "{:.2f}", "{:.0f}"), cells))
        name = f"**{kind}**" if kind == TOTAL else kind
        print(f"| {name} | {first['n']} | {em} | {es} | {length} | {syntax} |")
    print("\ntypes with length within 0.7-1.4x: "
          + ", ".join(f"{mode} {types_in_range(result[mode])}" for mode in MODES) + f" of {len(result['none']) - 1}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, action="append", help="a run dir with eval samples (repeatable)")
    for run in p.parse_args().run or [Path("run/quickstart")]:
        print_table(run, compare(run))


if __name__ == "__main__":
    main()
