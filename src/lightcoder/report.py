"""RUN/report.md: what a user wants to see after a run — the data funnel, the training curve in
numbers, the eval table against baselines, and a few sample completions (prefix ▌completion▐ suffix).

It only reads the run directory's files (stats.json, index.json, metrics.jsonl, eval/*/scores.json),
so it can be rebuilt at any time with `lightcoder report --out RUN`.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightcoder.config import RunConfig
from lightcoder.train.plot import read_metrics


def build_report(cfg: RunConfig, run_dir: Path, *, elapsed_s: float | None = None) -> str:
    run_dir = Path(run_dir)
    parts = [f"# lightcoder run: {run_dir}", ""]
    if elapsed_s is not None:
        parts += [f"Wall time: {elapsed_s / 60:.1f} min", ""]
    parts += _data_section(run_dir) + _pack_section(run_dir) + _train_section(cfg, run_dir)
    parts += _eval_section(run_dir)
    return "\n".join(parts).rstrip() + "\n"


def _data_section(run_dir: Path) -> list[str]:
    from lightcoder.data.report import format_funnel

    stats_path = run_dir / "data" / "stats.json"
    if not stats_path.exists():
        return []
    return ["## Data funnel", "", format_funnel(json.loads(stats_path.read_text())), ""]


def _pack_section(run_dir: Path) -> list[str]:
    index_path = run_dir / "shards" / "index.json"
    if not index_path.exists():
        return []
    index = json.loads(index_path.read_text())
    lines = ["## Training documents", "",
             f"Windows of {index['seq_len']} tokens (vocab {index['vocab_size']}).", "",
             "| split | documents | windows | tokens |", "|---|---:|---:|---:|"]
    for split, info in index["splits"].items():
        lines.append(f"| {split} | {info['num_documents']:,} | {info['num_windows']:,} | {info['num_tokens']:,} |")
    objectives = index.get("objectives", {})
    train = index["splits"].get("train", {})
    if train.get("level") == "context":
        from lightcoder.pack_stats import context_stats

        lines += ["", "Train split (`lightcoder pack --stats`):", "", "```",
                  *context_stats("train", train, index["seq_len"]), "```"]
    elif objectives:
        lines += ["", "Objective mix (documents): " + ", ".join(f"{k} {v:,}" for k, v in objectives.items())
                  + f"; SFIM fell back to random FIM {index.get('sfim_fallbacks', 0):,} times."]
    return lines + [""]


def _train_section(cfg: RunConfig, run_dir: Path) -> list[str]:
    from lightcoder.model.config import num_params

    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.exists():
        return []
    train_rows, val_rows = [], []
    for row in read_metrics(metrics_path):
        (val_rows if "val_loss" in row else train_rows).append(row)
    if not train_rows:
        return []
    summary_path = run_dir / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    model = cfg.model
    lines = ["## Training", "",
             f"Model `{cfg.model_preset}`: {model.n_layers} layers, dim {model.dim}, ffn {model.ffn_dim}, "
             f"{model.n_heads} heads / {model.n_kv_heads} KV heads, RoPE θ {model.rope_theta:g}; "
             f"{num_params(model, non_embedding=True) / 1e6:.2f}M non-embedding parameters.", ""]
    last = train_rows[-1]
    lines += [f"Steps: {last['step']:,}; tokens trained: {last['tokens']:,}; "
              f"throughput {last.get('tokens_per_s', 0):,.0f} tokens/s (last log step).", ""]
    lines += ["| step | tokens | train loss | val loss |", "|---:|---:|---:|---:|"]
    val_by_step = {r["step"]: r["val_loss"] for r in val_rows}
    for row in _spread(train_rows, 8):
        val = val_by_step.get(row["step"])
        lines.append(f"| {row['step']} | {row['tokens']:,} | {row['loss']:.3f} | "
                     f"{'' if val is None else f'{val:.3f}'} |")
    if val_rows:
        lines += ["", f"Final validation loss: {val_rows[-1]['val_loss']:.3f} (step {val_rows[-1]['step']})."]
    if summary.get("stop_reason"):
        lines.append(f"Stopped: {summary['stop_reason']}.")
    if (run_dir / "loss.png").exists():
        lines += ["", "![loss curve](loss.png)"]
    return lines + [""]


def _spread(rows: list[dict], k: int) -> list[dict]:
    if len(rows) <= k:
        return rows
    picks = sorted({round(i * (len(rows) - 1) / (k - 1)) for i in range(k)})
    return [rows[i] for i in picks]


def _eval_section(run_dir: Path) -> list[str]:
    from lightcoder.eval.builders import read_tasks
    from lightcoder.eval.report import (
        decoding_line, format_behaviour_table, format_benchmark_table, format_eval_table, format_samples,
    )
    from lightcoder.eval.runner import read_samples

    eval_dir = run_dir / "eval"
    scores = {}
    for name_dir in sorted(p for p in eval_dir.glob("*") if (p / "scores.json").exists()):
        scores[name_dir.name] = json.loads((name_dir / "scores.json").read_text())
    if not scores:
        return []
    ordered = {k: scores[k] for k in ("trained", "untrained", "most_common_line") if k in scores}
    ordered.update({k: v for k, v in scores.items() if k not in ordered})
    # format_eval_table ends with the legend of its cells (EM after strip / ES / length)
    lines = ["## Evaluation: FIM on held-out repositories and HumanEval infilling", "", format_eval_table(ordered), "",
             "What a user feels:", "", format_behaviour_table(ordered), "", decoding_line(ordered), ""]
    if "trained" in ordered:
        lines += [_comparison_line(ordered), ""]
    benchmarks = format_benchmark_table(eval_dir / "tasks")
    if benchmarks:
        lines += ["## Benchmark subsets (sandboxed execution; docs/evaluation.md)", "", benchmarks,
                  "Subsets of the paper's benchmarks for a quick signal, not comparable with full-set numbers.", ""]
    samples = read_samples(eval_dir / "trained")
    if samples:
        tasks = read_tasks(eval_dir / "tasks.jsonl")
        lines += ["## Sample completions (trained model)", "", format_samples(tasks, samples, 4), ""]
    return lines


def _comparison_line(scores: dict[str, dict]) -> str:
    """How many task types the trained model beats each other model on (EM, then ES breaks EM ties).

    Example: "trained vs untrained: better on 7/7 task types (EM ties broken by ES)".
    """
    trained = scores["trained"]["summary"]
    types = [t for t in trained if t != "total"]
    parts = []
    for name, other in scores.items():
        if name == "trained":
            continue
        other = other["summary"]
        wins = sum(1 for t in types if t in other and
                   (trained[t]["em"], trained[t]["es"]) > (other[t]["em"], other[t]["es"]))
        parts.append(f"vs {name}: better on {wins}/{len(types)} task types")
    return "Trained model " + "; ".join(parts) + " (exact match first, edit similarity breaks ties)."
