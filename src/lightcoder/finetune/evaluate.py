"""Before / after: the base and the fine-tuned model on the same FIM tasks, in the base's own format.

Two task sets (eval/builders.build_fim_tasks, FIM-Eval's task types plus random spans):
- heldout: the held-out files of the user's repositories (finetune/data.py), what the fine-tune is for;
- general: code the fine-tune did not target (default: this interpreter's standard library, a fixed
  sample of its files; or a tasks.jsonl, e.g. a quickstart run's RUN/eval/tasks.jsonl), so that
  forgetting shows.
Each model completes every task greedily through a `Completer` (the server's prompt path) and the
eval harness scores EM, edit similarity, stop rate and lengths (the `run-fim` task through
eval/runner.py, as the pretraining run's eval stage). The base model is scored, then the adapter is
merged into the same weights in place (one copy of a 7B model in memory) and the tuned model scored.
Outputs: RUN/eval/<set>_tasks.jsonl, RUN/eval/<set>/<base|tuned>/ (the runner's files).
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

from lightcoder.artifacts import write_json_atomic
from lightcoder.data.dedup import normalized_sha256
from lightcoder.data.records import SourceFile, read_corpus
from lightcoder.eval.builders import build_fim_tasks, read_tasks, write_tasks
from lightcoder.eval.runner import GenerationSettings, run_task
from lightcoder.eval.tasks import get_task
from lightcoder.finetune.base import Base
from lightcoder.finetune.config import FinetuneEvalSettings
from lightcoder.finetune.report import relative_change_ci

STDLIB_SAMPLE_FILES = 300  # stdlib files parsed for the general set (a fixed sample: parsing all is slow)


def stdlib_files(seed: int, exclude: frozenset[str] = frozenset()) -> list[SourceFile]:
    """A fixed sample of the interpreter's stdlib .py files (no tests, no site-packages), as SourceFiles;
    files whose whitespace-normalised hash (exact dedup's `normalized_sha256`) or stdlib-relative path is in
    `exclude` (the fine-tune trained on them) are left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.rglob("*.py") if not {"site-packages", "test", "tests", "idlelib"} & set(
        p.relative_to(root).parts))
    random.Random(f"{seed}:stdlib").shuffle(paths)
    out = []
    for p in paths:
        if len(out) == STDLIB_SAMPLE_FILES:
            break
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        rel = p.relative_to(root).as_posix()
        if rel in exclude or normalized_sha256(text) in exclude:
            continue
        out.append(SourceFile(repo=rel.split("/")[0].removesuffix(".py"), path=rel, language="Python", content=text))
    return out


def trained_keys(files) -> frozenset[str]:
    """What `stdlib_files` leaves out for these train files: each one's normalised hash, and every tail of its
    path at a "/" (a replayed "replay/json/decoder.py" is the stdlib's "json/decoder.py", even where curation,
    e.g. PII redaction, changed its text)."""
    keys = set()
    for f in files:
        keys.add(normalized_sha256(f.content))
        parts = f.path.split("/")
        keys.update("/".join(parts[i:]) for i in range(len(parts)))
    return frozenset(keys)


def task_sets(settings: FinetuneEvalSettings, split_dir: Path, eval_dir: Path) -> dict[str, list]:
    """{"heldout": tasks, "general": tasks} (general absent for eval.general none), cached as JSONL with the
    settings that built them (RUN/eval/<set>_tasks.settings.json): changed settings rebuild the set.

    The stdlib general set leaves out files the fine-tune trains on (replayed stdlib files of a quickstart
    base): forgetting is measured on code neither run adapted to in this fine-tune."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    common = {"seed": settings.seed, "max_context_chars": settings.max_context_chars}
    specs = {"heldout": ({**common, "per_type": settings.per_type},
                         lambda: build_fim_tasks(read_corpus(split_dir, "test"), per_type=settings.per_type,
                                                 seed=settings.seed, max_context_chars=settings.max_context_chars))}
    if settings.general == "stdlib":
        trained = trained_keys(read_corpus(split_dir, "train"))
        specs["general"] = ({**common, "general": "stdlib", "per_type": settings.general_per_type,
                             "trained_files": hashlib.sha256("".join(sorted(trained)).encode()).hexdigest()},
                            lambda: build_fim_tasks(stdlib_files(settings.seed, trained),
                                                    per_type=settings.general_per_type, seed=settings.seed,
                                                    max_context_chars=settings.max_context_chars))
    elif settings.general != "none":
        general = Path(settings.general).expanduser()
        if not general.is_file():
            raise ValueError(f"--eval.general {general}: no such tasks file (a tasks.jsonl from `lightcoder eval`, "
                             "'stdlib' or 'none')")
        specs["general"] = ({"general": str(general.resolve()),
                             "sha256": hashlib.sha256(general.read_bytes()).hexdigest()},
                            lambda: read_tasks(general))
    return {name: _cached_tasks(eval_dir, name, stamp, build) for name, (stamp, build) in specs.items()}


def _cached_tasks(eval_dir: Path, name: str, stamp: dict, build) -> list:
    """RUN/eval/<name>_tasks.jsonl, built again unless it was built under the same settings."""
    path, stamp_path = eval_dir / f"{name}_tasks.jsonl", eval_dir / f"{name}_tasks.settings.json"
    if not (path.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp):
        write_tasks(build(), path)
        write_json_atomic(stamp_path, stamp)
    return read_tasks(path)


def evaluate_models(base: Base, tune, settings: FinetuneEvalSettings, split_dir: Path, eval_dir: Path, *,
                    tuned_id: str, device: str = "cpu") -> dict:
    """Score the base, then the tuned model, on every task set, both on `device` (the one the fine-tune
    trained on: a 7B base is not scored on a CPU). `tune(base) -> tuned model` gets a holder whose `.model`
    is the only reference left to the base: it merges into it (LoRA) or drops it before loading the trained
    weights (full), so two models never share the GPU.

    Returns {set: {"base": summary, "tuned": summary, "n": tasks}} with the harness's per-type summaries.
    """
    from lightcoder.devices import model_id_suffix, resolve_device
    from lightcoder.infer.completer import Completer
    from lightcoder.infer.weight_dtype import cast_weights, describe_dtype, weights_id_suffix
    from lightcoder.model.hf import load_checkpoint

    sets = {k: v for k, v in task_sets(settings, split_dir, eval_dir).items() if v}
    if not sets:
        print("finetune eval: no tasks (no held-out files, eval.general none): nothing to compare", file=sys.stderr)
        return {}
    device = resolve_device(device, setting="train.device")
    model, cfg = load_checkpoint(base.path, device=device)
    why = cast_weights(model, device, copies=2)  # bf16 bases read in fp32 on CPUs slow in bf16 (+ the decoder's copy)
    if why != "as stored":
        print(f"finetune eval: {describe_dtype(model, why)}", file=sys.stderr)
    results: dict[str, dict] = {name: {"n": len(tasks)} for name, tasks in sets.items()}
    suffix = model_id_suffix(device) + weights_id_suffix(model, why)
    for who, model_id in (("base", f"base:{base.fingerprint()}{suffix}"), ("tuned", f"{tuned_id}{suffix}")):
        if who == "tuned":
            completer = None  # drop the base's fused weight copies and KV buffers: a 7B base's leave no room
            holder, model = SimpleNamespace(model=model), None
            free_memory(device)
            model = tune(holder).to(device)
        completer = Completer(model, base.tokenizer, cfg, template=base.template)
        gen = GenerationSettings(model_id=model_id, template=base.template.name,
                                 frequency_penalty=settings.frequency_penalty, presence_penalty=settings.presence_penalty,
                                 cache_weight=settings.cache_weight)
        for name, tasks in sets.items():
            print(f"-- eval {who} on {name} ({len(tasks)} tasks)", file=sys.stderr, flush=True)
            task = get_task("run-fim", data=str(eval_dir / f"{name}_tasks.jsonl"), mode=settings.mode,
                            max_new_tokens=settings.max_new_tokens)
            scores = run_task(task, completer, eval_dir / name / who, gen, restart_stale=True)
            results[name][who] = scores["summary"]
    for name in sets:  # the tuned - base change of ES with its bootstrap interval, paired by task
        base_es, tuned_es = (task_es(eval_dir / name / who) for who in ("base", "tuned"))
        results[name]["es_change_ci"] = relative_change_ci(base_es, tuned_es)
    return results


def free_memory(device) -> None:
    """Collect what was dropped and, on a GPU, hand its cached blocks back, before the next model loads."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def task_es(out_dir: Path) -> dict[str, float]:
    """{task_id: edit similarity} of one model's results.jsonl (the runner's)."""
    from lightcoder.eval.runner import read_rows

    return {r["task_id"]: r["es"] for r in read_rows(out_dir / "results.jsonl")[1]}
