"""FIM-Eval-style completion benchmark: generate -> samples.jsonl -> results.jsonl -> scores.json.

Input: FimTasks (lightcoder.eval.builders) and a predictor, i.e. anything with the
`Completer.complete(prefix, suffix, *, path, max_new_tokens, mode, temperature)` method (the real
model or a baseline). Output, in `out_dir`:

    samples.jsonl   one line per task, written as it is generated:
                    {task_id, task_type, prediction, new_tokens, prompt_tokens, stop_reason, seconds,
                     bits (of the reference middle + </s> given the prompt; models only), middle_bytes}
    results.jsonl   one line per task: {task_id, task_type, em, es, bleu, pred_len, ref_len, stopped,
                    syntax_ok, bits, middle_bytes}
    scores.json     {name, lightcoder_version, eval_version, num_tasks, generation, config, summary, timing}
    generation.json {name, model_id, max_new_tokens, mode, temperature} that samples.jsonl was
                    made with; a resume with other settings is refused

Decoding follows FIM-Eval (research/aixcoder-7b.md §6.3): greedy, the raw completion is scored
after strip(), no other post-processing (no syntax truncation). Besides EM/ES/BLEU, each task
records what a user feels: did the completion stop (the stop token before max_new_tokens), does
prefix + completion + suffix parse, and (for a model with `middle_bits`) the bits per byte of the
reference middle, a tokenizer-independent measure that needs no generation. FIM-Eval fed aiXcoder PSM prompts; our default is SPM,
aiXcoder's own inference format, so pass mode="psm" to copy the benchmark exactly.

Generation is resumable: a rerun skips task ids already in samples.jsonl (a half-written last
line from a crash is dropped), so generation can be interrupted and restarted, and rescoring a
finished run costs no model calls. Changing the generation settings needs force=True.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tqdm import tqdm

from lightcoder import __version__
from lightcoder.artifacts import append_jsonl, read_jsonl, trim_torn_tail, write_json_atomic, write_text_atomic
from lightcoder.eval.config import MODES
from lightcoder.eval.metrics import score_one, summarize, syntax_valid

if TYPE_CHECKING:
    from lightcoder.eval.builders import FimTask
    from lightcoder.infer.completer import Completion

EVAL_VERSION = 2  # bump when a metric or an output field changes meaning (2: stop, syntax, bits)
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.jsonl"
SCORES_FILE = "scores.json"
GENERATION_FILE = "generation.json"


class Predictor(Protocol):
    """What run_fim_eval needs: lightcoder.infer.completer.Completer, or a baseline."""

    def complete(self, prefix: str, suffix: str = "", *, path: str = "", max_new_tokens: int = 64,
                 mode: str = "spm", temperature: float = 0.0) -> Completion: ...


# ---- scoring (pure) ----

def score_samples(tasks: Sequence[FimTask], samples: Iterable[dict]) -> list[dict]:
    """Per-task result rows (task order) from samples.jsonl rows; every task needs exactly one sample.

    Example: score_samples([task], [{"task_id": task.task_id, "prediction": task.middle}])[0]["em"] -> True
    """
    by_id = {s["task_id"]: s for s in samples}
    task_ids = {t.task_id for t in tasks}
    missing = [t.task_id for t in tasks if t.task_id not in by_id]
    unknown = sorted(set(by_id) - task_ids)
    if missing or unknown:
        raise ValueError(
            f"samples do not match tasks: {len(missing)} task(s) without a sample (e.g. {missing[:3]}), "
            f"{len(unknown)} sample(s) for unknown task ids (e.g. {unknown[:3]}); "
            "generate the missing samples or score against the tasks file they were made from"
        )
    results = []
    for task in tasks:
        sample = by_id[task.task_id]
        row = {"task_id": task.task_id, "task_type": task.task_type}
        row.update(score_one(sample["prediction"], task.middle))
        row["stopped"] = sample.get("stop_reason") == "stop"
        row["syntax_ok"] = syntax_valid(task.prefix, sample["prediction"], task.suffix, task.language)
        row["bits"], row["middle_bytes"] = sample.get("bits"), len(task.middle.encode("utf-8", "surrogatepass"))
        results.append(row)
    return results


def _timing(samples: list[dict]) -> dict:
    seconds = sum(s["seconds"] for s in samples)
    new_tokens = sum(s["new_tokens"] for s in samples)
    return {
        "total_seconds": seconds,
        "mean_seconds": seconds / len(samples) if samples else 0.0,
        "new_tokens": new_tokens,
        "tokens_per_second": new_tokens / seconds if seconds > 0 else 0.0,
    }


# ---- files ----

def load_samples(path: str | Path) -> dict[str, dict]:
    """Samples by task id from a samples.jsonl; a half-written last line is cut off the file, so
    appends resume on a fresh line. ValueError naming file:line for a bad line before it."""
    path = Path(path)
    if not path.exists():
        return {}
    trim_torn_tail(path)
    rows = read_jsonl(path, hint="delete the file or rerun with force=True")
    return {sample["task_id"]: sample for sample in rows}


def _generation_changed(path: Path, settings: dict) -> bool:
    return path.exists() and json.loads(path.read_text(encoding="utf-8")) != settings


def _check_generation(path: Path, settings: dict) -> None:
    """Record the generation settings, or refuse to resume samples made with different ones."""
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != settings:
            raise ValueError(
                f"{path.parent} holds samples generated with {previous}, not {settings}; "
                "use another output dir or force=True to start over"
            )
    else:
        write_json_atomic(path, settings, sort_keys=False)


# ---- the run ----

def run_fim_eval(predictor: Predictor, tasks: Iterable[FimTask], out_dir: str | Path, *, name: str,
                 max_new_tokens: int = 96, mode: str = "spm", model_id: str = "",
                 config: dict | None = None, force: bool = False, restart_stale: bool = False) -> dict:
    """Complete every task with `predictor`, score, write the three files; returns the scores.json dict.

    Args:
        name: the model's name in tables (e.g. "trained", "most_common_line").
        model_id: identifies the weights (e.g. the checkpoint dir); samples made under another
            model_id are refused, so a newer checkpoint never resumes an older one's samples.
        config: the resolved eval/run config to stamp into scores.json (e.g. dataclasses.asdict(EvalConfig)).
        force: delete this dir's earlier outputs instead of resuming from them.
        restart_stale: when the earlier outputs were made with other generation settings (another
            model_id, mode, ...), start over instead of refusing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tasks = list(tasks)
    if len({t.task_id for t in tasks}) != len(tasks):
        raise ValueError("task ids must be unique; rebuild the tasks file")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {f: out / f for f in (SAMPLES_FILE, RESULTS_FILE, SCORES_FILE, GENERATION_FILE)}
    settings = {"name": name, "model_id": model_id, "max_new_tokens": max_new_tokens, "mode": mode,
                "temperature": 0.0}
    if force or (restart_stale and _generation_changed(paths[GENERATION_FILE], settings)):
        for path in paths.values():
            path.unlink(missing_ok=True)
    _check_generation(paths[GENERATION_FILE], settings)

    done = load_samples(paths[SAMPLES_FILE])
    unknown = sorted(set(done) - {t.task_id for t in tasks})
    if unknown:
        raise ValueError(
            f"{paths[SAMPLES_FILE]} has samples for {len(unknown)} task ids not in the tasks "
            f"(e.g. {unknown[:3]}); the tasks changed: use force=True or another output dir"
        )
    todo = [t for t in tasks if t.task_id not in done]

    # ---- generate (appending one flushed line per task, so a crash loses at most one task) ----
    with paths[SAMPLES_FILE].open("a", encoding="utf-8") as f, \
            tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=f"eval {name}",
                 unit="task", disable=None) as bar:
        for task in todo:
            start = time.perf_counter()
            completion = predictor.complete(prefix=task.prefix, suffix=task.suffix, path=task.path,
                                            max_new_tokens=max_new_tokens, mode=mode, temperature=0.0)
            sample = {
                "task_id": task.task_id,
                "task_type": task.task_type,
                "prediction": completion.text,
                "new_tokens": completion.new_tokens,
                "prompt_tokens": completion.prompt_tokens,
                "stop_reason": completion.stop_reason,
                "seconds": time.perf_counter() - start,
                "bits": None,
            }
            if hasattr(predictor, "middle_bits"):  # teacher-forced cost of the reference (models only)
                sample["bits"] = predictor.middle_bits(task.prefix, task.middle, task.suffix, path=task.path,
                                                       max_new_tokens=max_new_tokens, mode=mode)
            append_jsonl(f, sample)
            done[task.task_id] = sample
            bar.update()

    # ---- score ----
    samples = [done[t.task_id] for t in tasks]
    results = score_samples(tasks, samples)
    write_text_atomic(paths[RESULTS_FILE], "".join(json.dumps(r) + "\n" for r in results))
    scores = {
        "name": name,
        "lightcoder_version": __version__,
        "eval_version": EVAL_VERSION,
        "num_tasks": len(tasks),
        "generation": settings,
        "config": config or {},
        "summary": summarize(results),
        "timing": _timing(samples),
    }
    write_json_atomic(paths[SCORES_FILE], scores, sort_keys=False)
    return scores
