"""The ablation's table: per variant and task group, mean ± 95 % CI over seeds, paired comparisons, a plot.

Input: each run's per-task rows (RUN/eval/trained/results.jsonl, eval/runner.py), grouped:

    structured    method_body, if/for/while/try statements from the held-out repositories
    single_line   one statement; random_span  a random 1-3 line span (held-out repositories)
    he_*          HumanEval-infilling single-line, multi-line, random-span

Metrics per run and group: EM %, ES, stop % (ended with the stop token), length (pred:ref of the
means), syntax % (prefix + completion + suffix parses), bits per byte of the reference middle.
Across seeds: mean ± t(0.975, n-1) * sd / sqrt(n) (no interval with one seed). A comparison A - B is
paired by task: each task's metric averaged over seeds, then the mean difference with a 95 % bootstrap
interval over tasks (2,000 resamples) — the tasks, not only the seeds, are what varies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lightcoder.artifacts import write_json_atomic, write_text_atomic

GROUPS = {
    "structured": ("method_body", "if_statement", "for_statement", "while_statement", "try_statement"),
    "single_line": ("single_line",),
    "random_span": ("random_span",),
    "he_single_line": ("he_single_line",),
    "he_multi_line": ("he_multi_line",),
    "he_random_span": ("he_random_span",),
}
METRICS = ("em", "es", "stop", "length", "syntax", "bpb")
COMPARISONS = (("full", "lines"), ("full", "fim"), ("lines", "fim"), ("full", "ntp"), ("fim", "ntp"))
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def task_metrics(row: dict) -> dict:
    """Per-task values: em/stop/syntax as 0 or 100, es, bits and bytes (length is a ratio of means)."""
    return {"em": 100.0 * row["em"], "es": row["es"], "stop": 100.0 * bool(row.get("stopped")),
            "syntax": None if row.get("syntax_ok") is None else 100.0 * row["syntax_ok"],
            "bits": row.get("bits"), "bytes": row.get("middle_bytes"), "pred": row["pred_len"], "ref": row["ref_len"]}


def group_metrics(rows: list[dict]) -> dict:
    """One run's metrics over the tasks of one group."""
    syntax = [r["syntax"] for r in rows if r["syntax"] is not None]
    bits = [(r["bits"], r["bytes"]) for r in rows if r["bits"] is not None and r["bytes"]]
    ref = sum(r["ref"] for r in rows)
    return {"n": len(rows), "em": _mean([r["em"] for r in rows]), "es": _mean([r["es"] for r in rows]),
            "stop": _mean([r["stop"] for r in rows]), "length": sum(r["pred"] for r in rows) / ref if ref else None,
            "syntax": _mean(syntax) if syntax else None,
            "bpb": sum(b for b, _ in bits) / sum(n for _, n in bits) if bits else None}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def read_tasks_of(run_dir: Path, model: str = "trained") -> dict[str, dict] | None:
    """{task_id: task metrics} of one run's model, or None when it has no results yet."""
    from lightcoder.eval.runner import read_rows

    path = Path(run_dir) / "eval" / model / "results.jsonl"
    if not path.exists():
        return None
    return {r["task_id"]: {**task_metrics(r), "type": r["task_type"]} for r in read_rows(path)[1]}


def collect(runs: list[tuple[str, int, Path]]) -> dict:
    """{"runs": [{variant, seed, tasks}], "references": {model: tasks}} from finished run dirs."""
    out: dict = {"runs": [], "references": {}}
    for name, seed, run_dir in runs:
        tasks = read_tasks_of(run_dir)
        if tasks is not None:
            out["runs"].append({"variant": name, "seed": seed, "tasks": tasks})
        for model in ("untrained", "most_common_line"):
            ref = read_tasks_of(run_dir, model)
            if ref is not None and model not in out["references"]:
                out["references"][model] = ref
    return out


def by_group(tasks: dict[str, dict]) -> dict[str, dict]:
    return {g: group_metrics([t for t in tasks.values() if t["type"] in types])
            for g, types in GROUPS.items() if any(t["type"] in types for t in tasks.values())}


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95 % t interval); None half-width for a single value."""
    if len(values) < 2:
        return (values[0] if values else float("nan")), None
    t = _T975.get(len(values) - 1, 1.96)
    return float(np.mean(values)), t * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def paired_difference(a: list[dict], b: list[dict], group: str, metric: str, *, resamples: int = 2000) -> dict | None:
    """Mean over tasks of (A - B), each task averaged over its seeds, with a bootstrap 95 % interval."""
    def per_task(runs: list[dict]) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        for run in runs:
            for task_id, t in run["tasks"].items():
                if t["type"] in GROUPS[group]:
                    v = t["bits"] / t["bytes"] if metric == "bpb" and t["bits"] is not None and t["bytes"] else t.get(metric)
                    if v is not None:
                        values.setdefault(task_id, []).append(v)
        return {k: float(np.mean(v)) for k, v in values.items()}

    ta, tb = per_task(a), per_task(b)
    common = sorted(set(ta) & set(tb))
    if not common:
        return None
    diffs = np.array([ta[k] - tb[k] for k in common])
    rng = np.random.default_rng(0)
    boots = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"n_tasks": len(common), "diff": float(diffs.mean()), "lo": float(lo), "hi": float(hi)}


def summarize(data: dict) -> dict:
    """Per variant and group: mean ± CI of each metric; plus the paired comparisons."""
    variants: dict[str, list[dict]] = {}
    for run in data["runs"]:
        variants.setdefault(run["variant"], []).append(run)
    table: dict = {}
    for name, runs in variants.items():
        groups = [by_group(r["tasks"]) for r in runs]
        table[name] = {g: {"n_seeds": len(groups), "n_tasks": groups[0][g]["n"],
                           **{m: mean_ci([x[g][m] for x in groups if x[g][m] is not None]) for m in METRICS}}
                       for g in groups[0]}
    for model, tasks in data["references"].items():
        table[model] = {g: {"n_seeds": 1, "n_tasks": v["n"], **{m: (v[m], None) for m in METRICS}}
                        for g, v in by_group(tasks).items()}
    comparisons = {f"{a} - {b}": {g: {m: paired_difference(variants[a], variants[b], g, m)
                                      for m in ("es", "syntax", "stop", "bpb")} for g in GROUPS}
                   for a, b in COMPARISONS if a in variants and b in variants}
    return {"table": table, "comparisons": comparisons}


def _cell(value: tuple[float, float | None], metric: str) -> str:
    mean, half = value
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 2 if metric in ("length", "bpb") else 1
    return f"{mean:.{digits}f}" + ("" if half is None else f" ± {half:.{digits}f}")


def format_markdown(summary: dict, tokens: int) -> str:
    lines = [f"# Ablation: {tokens:,} training tokens per run", "",
             "Mean ± 95 % CI over seeds (t interval; no interval with one seed). EM, stop and syntax in %, "
             "length = mean predicted:reference characters, bpb = bits per byte of the reference middle "
             "(lower is better).", ""]
    table = summary["table"]
    groups = [g for g in GROUPS if any(g in v for v in table.values())]
    for g in groups:
        lines += [f"## {g}", "", "| variant | seeds | tasks | " + " | ".join(METRICS) + " |",
                  "|---|---:|---:|" + "---:|" * len(METRICS)]
        for name, row in table.items():
            if g in row:
                r = row[g]
                lines.append(f"| {name} | {r['n_seeds']} | {r['n_tasks']} | "
                             + " | ".join(_cell(r[m], m) for m in METRICS) + " |")
        lines.append("")
    for title, comp in summary["comparisons"].items():
        lines += [f"## {title} (paired by task, 95 % bootstrap interval)", "",
                  "| group | ES | syntax | stop | bpb |", "|---|---:|---:|---:|---:|"]
        for g, metrics in comp.items():
            cells = ["-" if d is None else f"{d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"
                     for d in (metrics[m] for m in ("es", "syntax", "stop", "bpb"))]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary["table"]
    groups = [g for g in GROUPS if any(g in v for v in table.values())]
    metrics = ("es", "stop", "syntax", "bpb")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4))
    names = list(table)
    width = 0.8 / max(1, len(names))
    for ax, metric in zip(axes, metrics):
        for i, name in enumerate(names):
            means = [table[name][g][metric][0] if g in table[name] and table[name][g][metric][0] is not None
                     else np.nan for g in groups]
            errs = [table[name][g][metric][1] or 0.0 if g in table[name] else 0.0 for g in groups]
            ax.bar(np.arange(len(groups)) + i * width, means, width, yerr=errs, label=name, capsize=2)
        ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, groups, rotation=45, ha="right")
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, data: dict, *, tokens: int) -> dict:
    """OUT/ablation.json, OUT/ablation.md and OUT/ablation.png from the runs collected so far."""
    summary = summarize(data)
    write_json_atomic(out / "ablation.json", {"tokens": tokens, **summary,
                                              "runs": [{k: v for k, v in r.items() if k != "tasks"}
                                                       for r in data["runs"]]})
    write_text_atomic(out / "ablation.md", format_markdown(summary, tokens))
    if data["runs"]:
        plot(summary, out / "ablation.png")
    return summary
