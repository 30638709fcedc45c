"""RUN/report.md of a fine-tune: data, training, and the before/after table a user decides on.

Example row: | heldout | 112 | 3.6 / 18.2 / 21 % / 140:44 | 8.9 / 27.5 / 64 % / 52:44 | 1.85 -> 1.35 | +51 % |
(EM % / edit similarity / stop rate / mean characters predicted:reference; bits per byte of the reference
middles, teacher-forced, which no decoding setting moves; the last column is the relative change of
edit similarity, the demo's target metric, with a 95 % bootstrap interval over the tasks: on ~85 tasks it
spans tens of points, so one run cannot tell small changes apart).
"""

from __future__ import annotations

import random

from lightcoder.eval.metrics import TOTAL

CI_RESAMPLES = 2000


def cell(summary: dict) -> str:
    s = summary[TOTAL]
    stop = "-" if s.get("stop_rate") is None else f"{s['stop_rate']:.0f} %"
    return f"{s['em']:.1f} / {s['es']:.1f} / {stop} / {s['pred_len']:.0f}:{s['ref_len']:.0f}"


def relative_es(results: dict, name: str) -> float | None:
    """(tuned ES - base ES) / base ES for one task set, in percent."""
    row = results.get(name, {})
    if "base" not in row or "tuned" not in row or not row["base"][TOTAL]["es"]:
        return None
    base, tuned = row["base"][TOTAL]["es"], row["tuned"][TOTAL]["es"]
    return 100.0 * (tuned - base) / base


def relative_change_ci(base: dict[str, float], tuned: dict[str, float], *, resamples: int = CI_RESAMPLES,
                       seed: int = 0) -> tuple[float, float] | None:
    """95 % bootstrap interval of 100 * (sum tuned / sum base - 1) over tasks resampled with replacement,
    paired by task id (both models answered the same tasks). None with fewer than two shared tasks.

    Example: relative_change_ci({"a": 10, "b": 20}, {"a": 12, "b": 24}) -> (20.0, 20.0)
    """
    ids = sorted(set(base) & set(tuned))
    if len(ids) < 2:
        return None
    rng = random.Random(seed)
    changes = []
    for _ in range(resamples):
        sample = [rng.choice(ids) for _ in ids]
        total = sum(base[i] for i in sample)
        if total > 0:
            changes.append(100.0 * (sum(tuned[i] for i in sample) / total - 1.0))
    if not changes:
        return None
    changes.sort()
    return changes[int(0.025 * len(changes))], changes[min(len(changes) - 1, int(0.975 * len(changes)))]


def change_text(results: dict, name: str) -> str:
    """"+11.3 % [-11.2, +42.2]": the relative ES change and its 95 % interval (when evaluated)."""
    change = relative_es(results, name)
    if change is None:
        return "-"
    ci = results[name].get("es_change_ci")
    return f"{change:+.1f} %" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")


def bpb_text(row: dict) -> str:
    """"1.85 -> 1.35": bits per byte of the reference middles, base -> tuned ("-" when a model has none)."""
    base, tuned = (row[who][TOTAL].get("bpb") for who in ("base", "tuned"))
    return "-" if base is None or tuned is None else f"{base:.2f} -> {tuned:.2f}"


def eval_table(results: dict) -> list[str]:
    lines = ["| task set | tasks | base: EM / ES / stop / len | tuned: EM / ES / stop / len | bits per byte | "
             "ES change [95 % CI] |", "|---|---:|---|---|---:|---:|"]
    for name, row in results.items():
        if "base" not in row or "tuned" not in row:
            continue
        lines.append(f"| {name} | {row['n']} | {cell(row['base'])} | {cell(row['tuned'])} | {bpb_text(row)} | "
                     f"{change_text(results, name)} |")
    return lines


def per_type_table(results: dict, name: str) -> list[str]:
    row = results.get(name, {})
    if "base" not in row or "tuned" not in row:
        return []
    lines = [f"Per task type ({name}), ES base -> tuned:", "", "| type | n | base ES | tuned ES |", "|---|---:|---:|---:|"]
    for task_type, s in row["base"].items():
        if task_type == TOTAL:
            continue
        t = row["tuned"].get(task_type, {})
        lines.append(f"| {task_type} | {s['n']} | {s['es']:.1f} | {t.get('es', 0.0):.1f} |")
    return lines


def decoding_text(eval_section: dict) -> str:
    """"greedy" or "greedy, frequency penalty 1, cache weight 0.3": how both models were decoded."""
    parts = [f"{name.replace('_', ' ')} {eval_section[name]:g}"
             for name in ("frequency_penalty", "presence_penalty", "cache_weight") if eval_section.get(name)]
    return ", ".join(["greedy", *parts])


def _replayed(split: dict) -> str:
    """" (27 of them replayed from the base's data, 0.60 MB)" when the split mixed in replay files."""
    replay = split.get("replay") or {}
    if not replay.get("files"):
        return ""
    return f" ({replay['files']} of them replayed from the base's data, {replay['bytes'] / 1e6:.2f} MB)"


def build_report(record: dict, split: dict, train: dict, results: dict, run_dir) -> str:
    cfg = record["config"]
    lines = [f"# Fine-tune: {record['base']}", "",
             f"- method **{cfg['method']}**, template **{record['template']}**, corpus {', '.join(cfg['corpus'])}",
             f"- files: train {split['train']['files']}{_replayed(split)}, valid {split['valid']['files']}, held out "
             f"{split['test']['files']} ({split['repos']} repositories; held-out files are never trained on)"]
    if train:
        minutes = train.get("elapsed_s", 0) / 60
        lines.append(f"- training: {train.get('steps')} steps, {train.get('tokens', 0):,} tokens, {minutes:.1f} min "
                     f"on {train.get('device', '?')}, stop: {train.get('stop_reason')}")
        if train.get("trainable_params"):
            lines.append(f"- trainable parameters: {train['trainable_params']:,} of {train['total_params']:,} "
                         f"({100 * train['trainable_params'] / train['total_params']:.2f} %)")
        if train.get("val_loss") is not None and train.get("initial_val_loss") is not None:
            lines.append(f"- validation loss (held-in files of the same repositories): "
                         f"{train['initial_val_loss']:.3f} -> {train['val_loss']:.3f}")
    lines += ["", "## Before / after", "",
              "EM % / edit similarity / stop rate (the completion ended with the stop token) / mean characters "
              f"predicted:reference; {decoding_text(cfg.get('eval', {}))}, the server's prompt format for this base; "
              "bits per byte of the reference middles (lower is better; no decoding setting moves it).", ""]
    lines += eval_table(results) if results else ["(no evaluation: see eval.enabled / held-out files)"]
    lines += ["", *per_type_table(results, "heldout")]
    lines += ["", "## Use it", "", "```bash",
              f"lightcoder serve {run_dir}                       # base + adapter (merged in memory)",
              f"lightcoder export {run_dir} --format hf --out merged-hf   # merged weights",
              f"lightcoder complete {run_dir} --prefix-file a.py --suffix-file b.py", "```", ""]
    return "\n".join(lines)
