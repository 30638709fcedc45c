"""Markdown for eval results: the per-type score table and a few sample completions.

Input: scores.json dicts of the `run-fim` task (eval/runner.py) and samples.jsonl rows; output:
markdown strings for RUN/report.md and the terminal. The table copies aiXcoder's FIM-Eval tables
(research/aixcoder-7b.md §6.3): one row per task type, one column per model, each cell
`EM / ES / pred:ref` (exact match %, edit similarity 0..100, mean characters predicted:reference).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from lightcoder.eval.builders import HUMANEVAL_TYPES, TASK_TYPES
from lightcoder.eval.metrics import TOTAL, score_one

if TYPE_CHECKING:
    from lightcoder.eval.builders import FimTask

CURSOR_OPEN, CURSOR_CLOSE = "\u258c", "\u2590"  # ▌completion▐ marks the inserted middle
PREFIX_LINES, SUFFIX_LINES = 6, 3


def _summary(scores: Mapping) -> Mapping:
    return scores["summary"] if "summary" in scores else scores


def _row_order(summaries: Iterable[Mapping]) -> list[str]:
    seen: list[str] = []
    for summary in summaries:
        seen += [t for t in summary if t != TOTAL and t not in seen]
    known = TASK_TYPES + tuple(HUMANEVAL_TYPES)
    ordered = [t for t in known if t in seen] + [t for t in seen if t not in known]
    return ordered + [TOTAL]


def format_eval_table(scores_by_model: Mapping[str, Mapping]) -> str:
    """One markdown row per task type (then total), one `EM / ES / pred:ref` column per model.

    Values are scores.json dicts or their "summary" tables. Example cell: "35.0 / 56.1 / 146:167".
    """
    return _table(scores_by_model, _accuracy_cell,
                  "Cells: exact match % (after strip, as aiXcoder FIM-Eval) / edit similarity (0-100) / "
                  "mean characters predicted:reference.")


def format_behaviour_table(scores_by_model: Mapping[str, Mapping]) -> str:
    """What a user feels, per task type and model: `stop % / length x / syntax % / bits per byte`.

    Example cell: "92 / 1.1x / 85 / 1.42" ("-" for a value the model has none of, e.g. a baseline's bits).
    """
    return _table(scores_by_model, _behaviour_cell,
                  "Cells: % of completions that ended with the stop token before the token limit / mean "
                  "predicted:reference length / % where prefix + completion + suffix parses / bits per byte "
                  "of the reference middle and its stop token (teacher-forced; lower is better).")


def decoding_line(scores_by_model: Mapping[str, Mapping]) -> str:
    """How the models were decoded, from the generation settings each scores.json recorded.

    Example: "Decoding: greedy, SPM prompts, 128 new tokens, frequency penalty 1, n-gram cache 0.3 (trained,
    untrained); none, a fixed answer (most_common_line)." One clause per distinct setting; a predictor
    without a model (no template recorded) decodes nothing, whatever settings it was handed.
    """
    by_setting: dict[str, list[str]] = {}
    for model, scores in scores_by_model.items():
        gen = scores.get("eval_config", {}).get("generation", {})
        if not gen:
            continue
        if not gen.get("template"):
            by_setting.setdefault("none, a fixed answer", []).append(model)
            continue
        parts = ["greedy" if not gen.get("temperature") else f"temperature {gen['temperature']:g}",
                 f"{str(gen.get('mode', '')).upper()} prompts", f"{gen.get('max_new_tokens')} new tokens"]
        parts += [f"{label} {gen[key]:g}" for key, label in (("frequency_penalty", "frequency penalty"),
                                                              ("presence_penalty", "presence penalty"),
                                                              ("cache_weight", "n-gram cache")) if gen.get(key)]
        by_setting.setdefault(", ".join(parts), []).append(model)
    clauses = [f"{setting} ({', '.join(models)})" for setting, models in by_setting.items()]
    return f"Decoding: {'; '.join(clauses)}." if clauses else ""


def _accuracy_cell(row: Mapping) -> str:
    return f"{row['em']:.1f} / {row['es']:.1f} / {row['pred_len']:.0f}:{row['ref_len']:.0f}"


def _behaviour_cell(row: Mapping) -> str:
    def pct(key: str) -> str:
        return "-" if row.get(key) is None else f"{row[key]:.0f}"

    ratio = row["pred_len"] / row["ref_len"] if row.get("ref_len") else 0.0
    bpb = "-" if row.get("bpb") is None else f"{row['bpb']:.2f}"
    return f"{pct('stop_rate')} / {ratio:.2f}x / {pct('syntax')} / {bpb}"


def _table(scores_by_model: Mapping[str, Mapping], cell, legend: str) -> str:
    summaries = {model: _summary(scores) for model, scores in scores_by_model.items()}
    models = list(summaries)
    lines = [
        "| task type | n | " + " | ".join(models) + " |",
        "|---|---:|" + "---:|" * len(models),
    ]
    for task_type in _row_order(summaries.values()):
        n = next((s[task_type]["n"] for s in summaries.values() if task_type in s), 0)
        cells = ["-" if summaries[m].get(task_type) is None else cell(summaries[m][task_type]) for m in models]
        name = f"**{task_type}**" if task_type == TOTAL else task_type
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", legend]) + "\n"


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return fence


def _code_block(text: str) -> str:
    fence = _fence(text)
    return f"{fence}\n{text}\n{fence}"


def format_sample(task: FimTask, prediction: str) -> str:
    """One task as markdown: `prefix tail ▌prediction▐ suffix head`, then the reference middle."""
    prefix_tail = "\n".join(task.prefix.split("\n")[-PREFIX_LINES:])
    suffix_head = "\n".join(task.suffix.split("\n")[:SUFFIX_LINES])
    scores = score_one(prediction, task.middle)
    verdict = "exact match" if scores["em"] else f"ES {scores['es']:.0f}"
    shown = f"{prefix_tail}{CURSOR_OPEN}{prediction}{CURSOR_CLOSE}{suffix_head}"
    return (
        f"**{task.task_id}** ({task.task_type}, `{task.path}`): {verdict}\n\n"
        f"{_code_block(shown)}\n\nreference:\n\n{_code_block(task.middle)}\n"
    )


def format_samples(tasks: Sequence[FimTask], samples: Iterable[Mapping], k: int = 5) -> str:
    """Markdown for k completions, taken round-robin over task types so each type shows up.

    Tasks without a sample are skipped; samples are the runner's samples.jsonl rows (task_id, completion).
    """
    predictions = {s["task_id"]: s["completion"] for s in samples}
    queues: dict[str, list[FimTask]] = {}
    for task in tasks:
        if task.task_id in predictions:
            queues.setdefault(task.task_type, []).append(task)
    picked: list[FimTask] = []
    while len(picked) < k and any(queues.values()):
        for queue in queues.values():
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return "\n".join(format_sample(t, predictions[t.task_id]) for t in picked)


def format_benchmark_table(tasks_dir) -> str:
    """Markdown for RUN/eval/tasks/<task>/<model>/scores.json (eval/runner.py): one row per task and
    model with the subset size and the headline metric (pass@1 for execution tasks, else EM)."""
    import json
    from pathlib import Path

    rows = []
    for path in sorted(Path(tasks_dir).glob("*/*/scores.json")):
        scores = json.loads(path.read_text(encoding="utf-8"))
        total = scores["summary"]["total"]
        limit = scores.get("eval_config", {}).get("task", {}).get("settings", {}).get("limit")
        metric = (f"pass@1 {total['pass@1']:.1f}" if "pass@1" in total else f"EM {total.get('em', 0.0):.1f}")
        statuses = ", ".join(f"{k} {v}" for k, v in total.get("statuses", {}).items())
        rows.append(f"| {scores['task']} | {path.parent.name} | {total['n_problems']}"
                    f"{'' if limit else ' (all)'} | {metric} | {statuses} |")
    if not rows:
        return ""
    return "\n".join(["| benchmark | model | problems | score | sandbox outcomes |", "|---|---|---:|---:|---|",
                      *rows]) + "\n"
