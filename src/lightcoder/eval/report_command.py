"""`lightcoder eval report DIR... [--md F] [--html F] [--plots DIR]`: compare several eval runs.

Each DIR is one task's output dir (it has scores.json), or a dir holding such dirs at any depth
(e.g. RUN/eval). Runs are named by their dir relative to the common parent (or `--name
LABEL=DIR`). For each task the report has one table, rows = task types + total, one column per run:

    execution tasks   pass@1 (pass@10, ... when there were enough samples)  e.g. "41.2"
    match tasks       EM / BLEU / CodeBLEU / pred:ref chars (whichever the task computed)

and plots (matplotlib, PNG next to the report): the main metric per run and task, and aiXcoder's
generated-length analysis — mean predicted vs reference length per task type, and a scatter of
predicted vs reference length per sample. Runs with different eval configs are flagged per
task (config hash shown), since their numbers are not comparable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lightcoder.data.report_html import NUMERIC_STYLE, STYLE, html_page
from lightcoder.data.report_html import markdown_to_html as _markdown_to_html

MATCH_COLUMNS = (("em", "EM"), ("bleu", "BLEU"), ("codebleu", "CodeBLEU"), ("es", "ES"), ("id_f1", "ID-F1"))


def find_runs(paths: list[str]) -> dict[str, dict[str, dict]]:
    """{run name: {task name: scores.json}} for every scores.json under the given dirs.

    A run is named by its LABEL= (else the dir's name, or its full path when two dirs share a
    name), plus "/<model>" when scores sit in <task>/<model>/ dirs (RUN/eval/tasks/humaneval/trained).
    """
    labelled = []
    for item in paths:
        label, _, path = item.partition("=") if "=" in item else ("", "", item)
        labelled.append((label, Path(path)))
    names = [root.name for _, root in labelled]
    runs: dict[str, dict[str, dict]] = {}
    for label, root in labelled:
        if not root.exists():
            raise FileNotFoundError(f"eval report: {root} does not exist")
        files = [root / "scores.json"] if (root / "scores.json").exists() else sorted(root.rglob("scores.json"))
        if not files:
            raise FileNotFoundError(f"eval report: no scores.json under {root}; run `python -m lightcoder.eval "
                                    "run ...` (or `lightcoder eval`) first")
        base = label or (root.name if names.count(root.name) == 1 else str(root))
        for f in files:
            scores = json.loads(f.read_text(encoding="utf-8"))
            if "task" not in scores:  # a run's FIM scores from before the one harness: the same table
                scores = {**scores, "task": "run-fim", "kind": "match", "config_hash": "-"}
            depth = len(f.parent.relative_to(root).parts)
            model_depth = 1 if scores["task"] == "run-fim" else 2  # RUN/eval/<model>, RUN/eval/tasks/<task>/<model>
            run = f"{base}/{f.parent.name}" if depth >= model_depth else base
            runs.setdefault(run, {})[scores["task"]] = scores
    return runs


def _cell(row: dict | None, kind: str) -> str:
    if row is None:
        return "-"
    if kind == "execution":
        ks = [k for k in row if k.startswith("pass@")]
        main = " / ".join(f"{row[k]:.1f}" for k in ks) or "-"
        return main + (f" (EM {row['em']:.1f})" if "em" in row else "")
    parts = [f"{row[k]:.1f}" for k, _ in MATCH_COLUMNS if k in row]
    if "pred_len" in row and "ref_len" in row:
        parts.append(f"{row['pred_len']:.0f}:{row['ref_len']:.0f}")
    return " / ".join(parts)


def _legend(rows: list[dict], kind: str) -> str:
    if kind == "execution":
        ks = sorted({k for r in rows for k in r if k.startswith("pass@")}, key=lambda k: int(k[5:]))
        return "Cells: " + " / ".join(ks) + " (%)" + ("; EM = exact match of the infilled middle" if any(
            "em" in r for r in rows) else "") + "."
    names = [label for key, label in MATCH_COLUMNS if any(key in r for r in rows)]
    if any("pred_len" in r for r in rows):
        names.append("pred:ref chars")
    return "Cells: " + " / ".join(names) + "."


def format_markdown(runs: dict[str, dict[str, dict]], plots: dict[str, str] | None = None) -> str:
    tasks = sorted({t for r in runs.values() for t in r})
    names = list(runs)
    lines = ["# Evaluation comparison", "", "Runs: " + ", ".join(f"`{n}`" for n in names), ""]
    for task in tasks:
        present = {n: runs[n][task] for n in names if task in runs[n]}
        kind = next(iter(present.values()))["kind"]
        hashes = {s.get("protocol_hash", "-") for s in present.values()}
        lines += [f"## {task}", ""]
        if len(hashes) > 1:
            lines += ["Runs used different eval protocols (" + ", ".join(f"{n}: `{s.get('protocol_hash')}`"
                      for n, s in present.items()) + "): differences may come from the config, not the model.", ""]
        types = []
        for s in present.values():
            types += [t for t in s["summary"] if t != "total" and t not in types]
        lines += ["| task type | n | " + " | ".join(present) + " |", "|---|---:|" + "---:|" * len(present)]
        for t in types + ["total"]:
            n = next((s["summary"][t].get("n_problems", s["summary"][t].get("n", "")) for s in present.values()
                      if t in s["summary"]), "")
            label = f"**{t}**" if t == "total" else t
            lines.append(f"| {label} | {n} | " + " | ".join(_cell(s["summary"].get(t), kind)
                                                            for s in present.values()) + " |")
        rows = [s["summary"].get("total", {}) for s in present.values()]
        lines += ["", _legend(rows, kind), ""]
        for name, scores in present.items():
            cfg = scores.get("eval_config", {})
            limit = cfg.get("task", {}).get("settings", {}).get("limit")
            gen = cfg.get("generation", {})
            if cfg:
                lines.append(f"- `{name}`: model `{gen.get('model_id', '')}`, template `{gen.get('template', '')}`, "
                             f"mode {gen.get('mode')}, n={gen.get('n')}, T={gen.get('temperature')}, "
                             f"max_new_tokens {gen.get('max_new_tokens')}, subset {limit if limit else 'all'}, "
                             f"config `{scores.get('config_hash')}`")
        lines.append("")
        for key in (f"{task}:main", f"{task}:length"):
            if plots and key in plots:
                lines += [f"![{key}]({plots[key]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _main_metric(row: dict, kind: str) -> float:
    if kind == "execution":
        return row.get("pass@1", 0.0)
    return row.get("em", 0.0)


def make_plots(runs: dict[str, dict[str, dict]], out_dir: Path) -> dict[str, str]:
    """PNG files per task: main metric per type and run; predicted vs reference length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    tasks = sorted({t for r in runs.values() for t in r})
    for task in tasks:
        present = {n: runs[n][task] for n in runs if task in runs[n]}
        kind = next(iter(present.values()))["kind"]
        types = [t for t in next(iter(present.values()))["summary"]]
        slug = task.replace("/", "_").replace(" ", "_").replace("(", "").replace(")", "")
        fig, ax = plt.subplots(figsize=(max(5, len(types) * 0.9), 3.2))
        width = 0.8 / max(1, len(present))
        for i, (name, scores) in enumerate(present.items()):
            ys = [_main_metric(scores["summary"].get(t, {}), kind) for t in types]
            ax.bar([x + i * width for x in range(len(types))], ys, width, label=name)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(types))], types, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("pass@1 %" if kind == "execution" else "exact match %")
        ax.set_title(task)
        ax.legend(fontsize=7)
        files[f"{task}:main"] = _save_figure(fig, out_dir / f"{slug}_main.png")
        if not any("pred_len" in s["summary"].get("total", {}) or s.get("lengths") for s in present.values()):
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
        for i, (name, scores) in enumerate(present.items()):
            summary = {t: r for t, r in scores["summary"].items() if "pred_len" in r}
            if summary:
                left.plot([r["ref_len"] for r in summary.values()], [r["pred_len"] for r in summary.values()],
                          "o", label=name)
            lengths = scores.get("lengths") or []
            if lengths:
                right.scatter([b for _, b in lengths], [a for a, _ in lengths], s=6, alpha=0.5, label=name)
        for axis, title in ((left, "mean per task type"), (right, "per sample")):
            lim = max([1.0, *axis.get_xlim(), *axis.get_ylim()])
            axis.plot([0, lim], [0, lim], "k--", lw=0.8)
            axis.set_xlabel("reference length (chars)")
            axis.set_ylabel("predicted length (chars)")
            axis.set_title(f"{task}: predicted vs reference, {title}", fontsize=9)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7)
        files[f"{task}:length"] = _save_figure(fig, out_dir / f"{slug}_length.png")
    return files


def _save_figure(fig, path: Path) -> str:
    """Lay out, write (PNG, 110 dpi) and close a figure; its path as a string."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def markdown_to_html(text: str) -> str:
    """format_markdown's output as a whole HTML page (data/report_html.py converts it)."""
    return html_page("lightcoder eval report", _markdown_to_html(text), style=STYLE + NUMERIC_STYLE)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lightcoder eval report", description="Compare eval runs (Markdown/HTML + plots).")
    p.add_argument("dirs", nargs="+", help="eval output dirs (or parents of them); LABEL=DIR names a run")
    p.add_argument("--md", default="eval_report.md", help="Markdown output (default eval_report.md)")
    p.add_argument("--html", default="", help="also write this HTML file")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    try:
        runs = find_runs(args.dirs)
    except FileNotFoundError as exc:
        print(f"lightcoder eval report: error: {exc}", file=sys.stderr)
        return 1
    md_path = Path(args.md)
    plots = {} if args.no_plots else make_plots(runs, md_path.parent / (md_path.stem + "_plots"))
    rel = {k: str(Path(v).relative_to(md_path.parent)) if Path(v).is_relative_to(md_path.parent) else v
           for k, v in plots.items()}
    text = format_markdown(runs, rel)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text, encoding="utf-8")
    if args.html:
        Path(args.html).write_text(markdown_to_html(text), encoding="utf-8")
    try:
        print(text)
    except BrokenPipeError:  # `| head`
        pass
    print(f"written: {md_path}" + (f", {args.html}" if args.html else ""), file=sys.stderr)
    return 0
