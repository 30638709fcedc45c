"""The stages of a run over one run directory: data -> tokenizer -> pack -> train -> eval -> report.

Each stage reads the previous stages' files only and writes its own directory under RUN:

    RUN/config.json   the resolved RunConfig          RUN/data/      corpus (lightcoder.data)
    RUN/stages.json   config section each stage used  RUN/tokenizer/ tokenizer (lightcoder.tokenizer)
    RUN/shards/       token windows (packing)         RUN/ckpt/      checkpoints (lightcoder.train)
    RUN/eval/         tasks + per-model scores        RUN/report.md  the summary a user reads

A finished stage (its DONE marker exists) is skipped on a rerun, so an interrupted run resumes
without losing finished stages; training resumes from its newest checkpoint. If the config of a
finished stage changed since it ran, the stage refuses to mix the two and says how to proceed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from pathlib import Path

from lightcoder.artifacts import is_done, write_text_atomic
from lightcoder.train.config import RESUME_SENSITIVE
from lightcoder.config import (
    ConfigError, RunConfig, config_to_dict, diff_configs, save_run_config, write_json_atomic,
)

# stage dir -> the command that builds it, the RunConfig sections its output depends on, and
# the stages it reads. stages.json records, per stage, the config it was built with, a build id,
# and the build ids of its inputs; a stage built from an older input build is refused.
STAGES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "data": ("data", ("data",), ()),
    "tokenizer": ("tokenizer", ("tokenizer",), ("data",)),
    "shards": ("pack", ("pack",), ("data", "tokenizer")),
    "ckpt": ("train", ("model", "train"), ("tokenizer", "shards")),
}
EVAL_MODELS = ("trained", "untrained", "most_common_line")


def heading(title: str) -> None:
    print(f"\n== {title} ==", file=sys.stderr, flush=True)


def check_stage(cfg: RunConfig, run_dir: Path, stage: str, *, force: bool) -> None:
    """Refuse to continue a stage built from a different config or from older inputs."""
    if force:
        return
    stages = read_stages(run_dir)
    record = stages.get(stage)
    out = run_dir / stage
    if record is None or not (out.is_dir() and any(out.iterdir())):
        return  # nothing built yet (e.g. a first try that failed on a bad setting): nothing to keep apart
    command = STAGES[stage][0]
    recorded = with_missing_keys(record["config"], _stage_config(RunConfig(), stage))
    recorded.get("train", {}).pop("dtype", None)  # recorded by runs before train.dtype auto; not compared
    changes = diff_configs(recorded, _stage_config(cfg, stage))
    if changes:
        raise ConfigError(
            f"{run_dir / stage} was built with a different config ({'; '.join(changes[:5])}). "
            f"Use a new --out directory, or rebuild it with `lightcoder {command} --force`.")
    for upstream in STAGES[stage][2]:
        if record["inputs"].get(upstream) != stages.get(upstream, {}).get("build"):
            raise ConfigError(
                f"{run_dir / stage} was built from an earlier {upstream} stage that has since been rebuilt: "
                f"rebuild it with `lightcoder {command} --force` (or `lightcoder quickstart --force`).")


def with_missing_keys(recorded: dict, defaults: dict) -> dict:
    """A stage record with the keys added to the config since it was written, at their defaults: a new
    key's default keeps the old behaviour, so a run made before it resumes instead of being refused.

    Example: with_missing_keys({"tokenizer": {"vocab_size": 512}}, {"tokenizer": {"vocab_size": 8192,
             "glue_newlines": True}}) -> {"tokenizer": {"vocab_size": 512, "glue_newlines": True}}
    """
    filled = dict(recorded)
    for key, default in defaults.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(filled[key], dict) and isinstance(default, dict):
            filled[key] = with_missing_keys(filled[key], default)
    return filled


def record_stage(cfg: RunConfig, run_dir: Path, stage: str, *, new_build: bool) -> str:
    """Write the stage's config, build id and input builds into stages.json; returns the build id."""
    stages = read_stages(run_dir)
    previous = stages.get(stage, {}).get("build")
    build = uuid.uuid4().hex[:12] if new_build or previous is None else previous
    stages[stage] = {"config": _stage_config(cfg, stage), "build": build,
                     "inputs": {up: stages.get(up, {}).get("build") for up in STAGES[stage][2]}}
    write_json_atomic(run_dir / "stages.json", stages)
    return build


def read_stages(run_dir: Path) -> dict:
    path = run_dir / "stages.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _stage_config(cfg: RunConfig, stage: str) -> dict:
    full = config_to_dict(cfg)
    sections = {s: full[s] for s in STAGES[stage][1]}
    if "model" in sections:  # vocab_size and max_seq_len come from the tokenizer and packing at train time
        sections["model"] = {k: v for k, v in sections["model"].items() if k not in ("vocab_size", "max_seq_len")}
    if "data" in sections:  # how the work is spread does not change the corpus (DataConfig.fingerprint)
        sections["data"] = {k: v for k, v in sections["data"].items() if k not in ("workers", "engine")}
    if "train" in sections:  # only what changes the numbers; budgets and cadence may change on resume
        # (dtype too: "auto" resumes in the checkpoint's dtype, and train/loop.check_resume warns on a change)
        sections["train"] = {k: v for k, v in sections["train"].items() if k in RESUME_SENSITIVE and k != "dtype"}
    return sections


# ----------------------------------------------------------------------------- stages


def stage_data(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.data.pipeline import run_data

    stats = _run_file_stage(cfg, run_dir, "data", "1/6 data: licence, ranking, filters, MinHash dedup, "
                            "PII, syntax, static analysis, split by repository",
                            lambda: run_data(cfg.data, run_dir / "data", force=force), force=force)
    _warn_unreadable_sources(stats, run_dir / "data")
    return stats


def _warn_unreadable_sources(stats: dict, data_dir: Path) -> None:
    # A truncated archive or an unreadable folder keeps what could be read; say so, not only in stats.json.
    for stage in stats.get("stages", []):
        for reason in ("broken_archive", "unreadable", "symlink_loop"):
            if dropped := stage.get("dropped", {}).get(reason):
                print(f"warning: {dropped['files']} source(s) {reason.replace('_', ' ')}; what could be read was "
                      f"kept (paths and errors in {data_dir / 'rejected' / (reason + '.jsonl')})", file=sys.stderr)


def stage_tokenizer(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.tokenizer.train import run_tokenizer

    return _run_file_stage(
        cfg, run_dir, "tokenizer", "2/6 tokenizer: byte-level BPE + aiXcoder special tokens",
        lambda: run_tokenizer(cfg.tokenizer, run_dir / "data", run_dir / "tokenizer", force=force), force=force)


def stage_pack(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.pack_stats import summary_line
    from lightcoder.packing import run_pack

    result = _run_file_stage(
        cfg, run_dir, "shards", "3/6 pack: repository ordering -> NTP / FIM / SFIM documents -> token windows",
        lambda: run_pack(cfg.pack, run_dir / "data", run_dir / "tokenizer", run_dir / "shards", force=force),
        force=force)
    print(summary_line(result), file=sys.stderr)  # `lightcoder pack --stats` prints the full table
    return result


def _run_file_stage(cfg: RunConfig, run_dir: Path, stage: str, title: str, run, *, force: bool) -> dict:
    """Check, run (skipped by the stage itself when its DONE marker exists), then record a stage."""
    heading(title)
    check_stage(cfg, run_dir, stage, force=force)
    save_run_config(cfg, run_dir)
    was_done = is_done(run_dir / stage) and not force
    result = run()
    record_stage(cfg, run_dir, stage, new_build=not was_done)  # recorded only once it succeeded
    return result


def stage_train(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    """Train in one process, or on every rank under `torchrun --nproc_per_node N -m lightcoder train`:
    all ranks train; rank 0 alone writes the shared files (config, stages.json, summary)."""
    from lightcoder.train.distributed import barrier, init_distributed, shutdown_distributed
    from lightcoder.train.inputs import model_config_for_run
    from lightcoder.train.loop import train

    env = init_distributed(cfg.train.device)  # no-op outside torchrun
    if env.is_main:
        schedule = "warmup-stable-decay" if cfg.train.schedule == "wsd" else cfg.train.schedule
        optimizer = "Muon + AdamW" if cfg.train.optimizer == "muon" else "AdamW"
        precision = {"auto": "bf16 autocast where fast", "bf16": "bf16 autocast", "fp32": "fp32"}[cfg.train.dtype]
        heading(f"4/6 train: LLaMA-style decoder, {optimizer} + {schedule}, {precision}")
    check_stage(cfg, run_dir, "ckpt", force=force)
    model_cfg = model_config_for_run(cfg, run_dir)
    if env.is_main:
        save_run_config(cfg, run_dir)
        fresh = force or not (run_dir / "ckpt").exists()
        if force and (run_dir / "ckpt").exists():
            shutil.rmtree(run_dir / "ckpt")
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        # recorded before training: an interrupted run resumes under the same record
        record_stage(cfg, run_dir, "ckpt", new_build=fresh)
    barrier(env)  # the other ranks start after rank 0 cleared a forced run
    summary = train(cfg.train, model_cfg, shards_dir=run_dir / "shards",
                    tokenizer_dir=run_dir / "tokenizer", out_dir=run_dir)
    if env.is_main:
        write_json_atomic(run_dir / "train_summary.json", summary)
    shutdown_distributed()
    return summary


def stage_eval(cfg: RunConfig, run_dir: Path, *, force: bool = False,
               models: tuple[str, ...] = EVAL_MODELS) -> dict[str, dict]:
    """Build FIM tasks from the held-out test repositories and score each model on them.

    Tasks are rebuilt when the data build or the task settings change; a model's samples are
    redone when its checkpoint (path + training build) or the generation settings change, and
    resumed otherwise.
    """
    import torch

    from lightcoder.data.records import read_corpus
    from lightcoder.devices import model_id_suffix, resolve_device
    from lightcoder.eval.baselines import MostCommonLinePredictor
    from lightcoder.eval.builders import build_fim_tasks, write_tasks
    from lightcoder.eval.runner import GenerationSettings, run_task
    from lightcoder.eval.tasks import get_task
    from lightcoder.infer.completer import Completer

    heading("5/6 eval: structured FIM tasks from held-out repositories")
    torch.backends.cuda.matmul.allow_tf32 = False  # score as the server does (PyTorch's default), not with the
    torch.backends.cudnn.allow_tf32 = False  # TF32 that training in this same process switched on for fp32 runs
    save_run_config(cfg, run_dir)
    eval_dir = run_dir / "eval"
    stages = read_stages(run_dir)
    task_key = {"data_build": stages.get("data", {}).get("build"), "per_type": cfg.eval.per_type,
                "seed": cfg.eval.seed, "max_context_chars": cfg.eval.max_context_chars,
                "humaneval_fim_per_type": cfg.eval.humaneval_fim_per_type}
    key_path = eval_dir / "tasks_key.json"
    if eval_dir.exists() and (force or not key_path.exists() or json.loads(key_path.read_text()) != task_key):
        shutil.rmtree(eval_dir)  # different tasks: every model's samples are stale
    tasks_path = eval_dir / "tasks.jsonl"
    if not tasks_path.exists():
        test_files = list(read_corpus(run_dir / "data", "test"))
        if not test_files:  # e.g. one repository: the split by repository put it all in train
            raise ConfigError(f"the test split of {run_dir / 'data'} is empty: the data stage splits by repository, "
                              "so evaluation needs a corpus of several (--corpus with more packages or repositories, "
                              "or a larger --data.test_fraction); training output is kept")
        tasks = build_fim_tasks(test_files, per_type=cfg.eval.per_type,
                                seed=cfg.eval.seed, max_context_chars=cfg.eval.max_context_chars)
        if not tasks:
            raise ConfigError(f"no evaluation tasks could be built from the test split of {run_dir / 'data'}: "
                              f"the test repositories have no parseable functions or statements")
        tasks += _humaneval_tasks(cfg.eval)
        write_tasks(tasks, tasks_path)
        write_json_atomic(key_path, task_key)
    task = get_task("run-fim", data=str(tasks_path), mode=cfg.eval.mode, max_new_tokens=cfg.eval.max_new_tokens)
    print(f"{len(task.problems())} tasks from the test split", file=sys.stderr)

    train_build = stages.get("ckpt", {}).get("build")
    device = resolve_device(cfg.eval.device, setting="eval.device")
    scores: dict[str, dict] = {}
    for name in models:
        if name == "most_common_line":
            predictor, model_id = MostCommonLinePredictor.fit_from_corpus(run_dir / "data"), name
        else:
            ckpt = _checkpoint_for(run_dir, name)
            predictor = Completer.load(ckpt, device=device, max_prompt_tokens=cfg.eval.max_prompt_tokens or None)
            model_id = f"{ckpt.resolve()}@{train_build}{model_id_suffix(device)}"
        print(f"-- {name}", file=sys.stderr, flush=True)
        gen = GenerationSettings(model_id=model_id, template=getattr(getattr(predictor, "template", None), "name", ""),
                                 max_prompt_tokens=cfg.eval.max_prompt_tokens,
                                 frequency_penalty=cfg.eval.frequency_penalty, presence_penalty=cfg.eval.presence_penalty,
                                 cache_weight=cfg.eval.cache_weight)
        # samples of another checkpoint or other settings: start over
        scores[name] = run_task(task, predictor, eval_dir / name, gen, restart_stale=True)
    if "trained" in models:  # benchmark subsets (HumanEval with execution, ...) via the sandboxed harness
        from lightcoder.eval.runner import run_stage_benchmarks

        ckpt = _checkpoint_for(run_dir, "trained")
        run_stage_benchmarks(cfg.eval, ckpt, eval_dir / "tasks",
                             model_id=f"{ckpt.resolve()}@{train_build}{model_id_suffix(device)}")
    return scores


def _humaneval_tasks(eval_cfg) -> list:
    """HumanEval-infilling FIM tasks for the eval table ([] with a note when the data is not here)."""
    from lightcoder.eval.builders import humaneval_fim_tasks

    if not eval_cfg.humaneval_fim_per_type:
        return []
    try:
        return humaneval_fim_tasks(per_type=eval_cfg.humaneval_fim_per_type, seed=eval_cfg.seed)
    except FileNotFoundError as exc:
        print(f"HumanEval infilling tasks skipped: {exc}", file=sys.stderr)
        return []


def _checkpoint_for(run_dir: Path, name: str) -> Path:
    from lightcoder.model.hf import resolve_checkpoint

    if name == "untrained":
        path = run_dir / "ckpt" / "step_000000"
        if not (path / "model.safetensors").exists():
            raise ConfigError(f"{path} is missing: the untrained baseline is saved when training starts")
        return path
    return resolve_checkpoint(run_dir)


def stage_report(cfg: RunConfig, run_dir: Path, *, force: bool = True, started: float | None = None) -> str:
    """Rebuild RUN/report.md from the run's files (always rebuilt: `force` has no effect)."""
    from lightcoder.report import build_report

    heading("6/6 report")
    text = build_report(cfg, run_dir, elapsed_s=None if started is None else time.time() - started)
    write_text_atomic(run_dir / "report.md", text)
    return text


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory; config.json is written by each stage once its checks pass."""
    run_dir.mkdir(parents=True, exist_ok=True)
