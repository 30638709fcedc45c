"""What the server's default `truncate: "syntax"` does to a run's completions, per task type.

    python benchmarks/served_truncation.py --run run/quickstart

The run's eval scores the raw greedy completion (no syntax truncation), while `lightcoder serve` trims by
default (infer/truncation.py): generation ends at the first line where prefix + completion + suffix
parses (`StructureStop`), and the result is cut to the longest line prefix with the fewest parse errors
(`trim_to_parse`). Greedy decoding makes the served text a prefix of the recorded one, so this script
replays both rules on RUN/eval/trained/samples.jsonl (no model needed) and rescores: exact match, edit
similarity, pred:ref length and syntax validity, raw against served. The numbers in docs/evaluation.md
("What the server's truncation does") come from it. The replay checks the stop rule at every newline, the
server once per generated token, so a token holding two newlines can leave the served text one blank line
longer: on 60 of run/quickstart's tasks completed both ways, 59 replays equal the server's text and one
differs by a trailing blank line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightcoder.eval.metrics import TOTAL, score_one, summarize, syntax_valid
from lightcoder.eval.runner import read_rows
from lightcoder.infer.truncation import StructureStop, trim_to_parse


def served_text(prefix: str, completion: str, suffix: str, language: str | None) -> str:
    """The text a `truncate: "syntax"` request returns, given the raw greedy completion."""
    stop = StructureStop(prefix, suffix, language)
    for i, ch in enumerate(completion):
        if ch == "\n" and stop.done(completion[: i + 1]):
            completion = completion[: i + 1]  # generation would have ended after this line
            break
    return trim_to_parse(prefix, completion, suffix, language)


def scored(task: dict, text: str) -> dict:
    row = score_one(text, task["middle"])
    row.update(task_type=task["task_type"],
               syntax_ok=syntax_valid(task["prefix"], text, task["suffix"], task.get("language")))
    return row


def compare(run: Path) -> dict[str, dict[str, dict]]:
    """{"raw": summary, "served": summary} over the run's trained samples (summaries as eval.metrics.summarize)."""
    tasks = {t["task_id"]: t for t in map(json.loads, (run / "eval" / "tasks.jsonl").read_text().splitlines())}
    samples = read_rows(run / "eval" / "trained" / "samples.jsonl")[1]
    if not samples:
        raise SystemExit(f"no samples in {run}/eval/trained/samples.jsonl: run the eval stage first")
    rows: dict[str, list[dict]] = {"raw": [], "served": []}
    for sample in samples:
        task = tasks[sample["task_id"]]
        raw = sample["completion"]
        rows["raw"].append(scored(task, raw))
        rows["served"].append(scored(task, served_text(task["prefix"], raw, task["suffix"], task.get("language"))))
    return {name: summarize(r) for name, r in rows.items()}


def print_table(result: dict[str, dict[str, dict]]) -> None:
    raw, served = result["raw"], result["served"]
    print("| task type | n | EM raw / served | ES raw / served | length raw / served | syntax % raw / served |")
    print("|---|---:|---|---|---|---|")
    for kind in raw:
        a, b = raw[kind], served[kind]
        name = f"**{kind}**" if kind == TOTAL else kind
        print(f"| {name} | {a['n']} | {a['em']:.1f} / {b['em']:.1f} | {a['es']:.1f} / {b['es']:.1f} | "
              f"{a['len_ratio']:.2f} / {b['len_ratio']:.2f} | {a['syntax']:.0f} / {b['syntax']:.0f} |")
    in_range = {name: sum(0.7 <= s["len_ratio"] <= 1.4 for k, s in table.items() if k != TOTAL)
                for name, table in result.items()}
    print(f"\ntypes with length within 0.7-1.4x: raw {in_range['raw']}, served {in_range['served']} "
          f"of {len(raw) - 1}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=Path("run/quickstart"))
    print_table(compare(p.parse_args().run))


if __name__ == "__main__":
    main()
