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

import dataclasses
import json
import sys
import time
from pathlib import Path

from lightcoder.config import (
    ConfigError, RunConfig, config_to_dict, diff_configs, save_run_config, write_json_atomic,
)

# stage name -> the RunConfig sections its output depends on (any change invalidates it)
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "tokenizer": ("data", "tokenizer"),
    "shards": ("data", "tokenizer", "pack"),
    "ckpt": ("data", "tokenizer", "pack", "model", "train"),
}
# train fields a resumed run may change: how long to train and how often to log/eval/save
RESUMABLE_TRAIN_KEYS = ("max_minutes", "max_steps", "max_tokens", "eval_every", "eval_batches",
                        "ckpt_every", "keep_checkpoints", "log_every", "num_threads")
EVAL_MODELS = ("trained", "untrained", "most_common_line")


def heading(title: str) -> None:
    print(f"\n== {title} ==", file=sys.stderr, flush=True)


def check_stage_config(cfg: RunConfig, run_dir: Path, stage: str, *, force: bool) -> None:
    """Refuse to continue a finished (or half-finished) stage built from a different config."""
    recorded = _read_stages(run_dir).get(stage)
    current = _stage_config(cfg, stage)
    if recorded is None or force:
        return
    changes = diff_configs(recorded, current)
    if changes:
        raise ConfigError(
            f"{run_dir / stage} was built with a different config ({'; '.join(changes[:5])}). "
            f"Use a new --out directory, or pass --force to rebuild {stage} and everything after it.")


def record_stage_config(cfg: RunConfig, run_dir: Path, stage: str) -> None:
    stages = _read_stages(run_dir)
    stages[stage] = _stage_config(cfg, stage)
    write_json_atomic(run_dir / "stages.json", stages)


def _stage_config(cfg: RunConfig, stage: str) -> dict:
    full = config_to_dict(cfg)
    sections = {s: full[s] for s in STAGE_SECTIONS[stage]}
    if "model" in sections:  # vocab_size and max_seq_len come from the tokenizer and packing at train time
        sections["model"] = {k: v for k, v in sections["model"].items() if k not in ("vocab_size", "max_seq_len")}
    if "train" in sections:  # budgets and cadence may change between resumes (training continues)
        sections["train"] = {k: v for k, v in sections["train"].items() if k not in RESUMABLE_TRAIN_KEYS}
    return sections


def _read_stages(run_dir: Path) -> dict:
    path = run_dir / "stages.json"
    return json.loads(path.read_text()) if path.exists() else {}


# ----------------------------------------------------------------------------- stages


def stage_data(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.data.pipeline import run_data

    heading("1/6 data: read, filter, dedup, split by repository")
    check_stage_config(cfg, run_dir, "data", force=force)
    record_stage_config(cfg, run_dir, "data")
    return run_data(cfg.data, run_dir / "data", force=force)


def stage_tokenizer(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.tokenizer.train import run_tokenizer

    heading("2/6 tokenizer: byte-level BPE + aiXcoder special tokens")
    check_stage_config(cfg, run_dir, "tokenizer", force=force)
    record_stage_config(cfg, run_dir, "tokenizer")
    return run_tokenizer(cfg.tokenizer, run_dir / "data", run_dir / "tokenizer", force=force)


def stage_pack(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.packing import run_pack

    heading("3/6 pack: repository ordering -> NTP / FIM / SFIM documents -> token windows")
    check_stage_config(cfg, run_dir, "shards", force=force)
    record_stage_config(cfg, run_dir, "shards")
    return run_pack(cfg.pack, run_dir / "data", run_dir / "tokenizer", run_dir / "shards", force=force)


def model_config_for_run(cfg: RunConfig, run_dir: Path):
    """The model config with vocab_size taken from the run's tokenizer, checked against the packing."""
    from lightcoder.tokenizer.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(run_dir / "tokenizer")
    if cfg.model.max_seq_len < cfg.pack.seq_len:
        raise ConfigError(f"model.max_seq_len ({cfg.model.max_seq_len}) is shorter than pack.seq_len "
                          f"({cfg.pack.seq_len}): raise --model.max_seq_len or lower --pack.seq_len")
    # The checkpoint records the context it was trained on (max_position_embeddings), so prompts
    # are budgeted to it: positions past the training window are untrained for RoPE.
    return dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size, max_seq_len=cfg.pack.seq_len)


def stage_train(cfg: RunConfig, run_dir: Path, *, force: bool = False) -> dict:
    from lightcoder.train.loop import train

    heading("4/6 train: LLaMA-style decoder, AdamW + cosine, bf16 autocast")
    if force and (run_dir / "ckpt").exists():
        import shutil
        shutil.rmtree(run_dir / "ckpt")
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    check_stage_config(cfg, run_dir, "ckpt", force=force)
    record_stage_config(cfg, run_dir, "ckpt")
    model_cfg = model_config_for_run(cfg, run_dir)
    summary = train(cfg.train, model_cfg, shards_dir=run_dir / "shards",
                    tokenizer_dir=run_dir / "tokenizer", out_dir=run_dir)
    write_json_atomic(run_dir / "train_summary.json", summary)
    return summary


def stage_eval(cfg: RunConfig, run_dir: Path, *, force: bool = False,
               models: tuple[str, ...] = EVAL_MODELS) -> dict[str, dict]:
    """Build FIM tasks from the held-out test repositories and score each model on them."""
    from lightcoder.data.pipeline import read_corpus
    from lightcoder.eval.baselines import MostCommonLinePredictor
    from lightcoder.eval.builders import build_fim_tasks, read_tasks, write_tasks
    from lightcoder.eval.harness import run_fim_eval
    from lightcoder.infer.completer import Completer

    heading("5/6 eval: structured FIM tasks from held-out repositories")
    eval_dir = run_dir / "eval"
    tasks_path = eval_dir / "tasks.jsonl"
    if force and eval_dir.exists():
        import shutil
        shutil.rmtree(eval_dir)
    if not tasks_path.exists():
        tasks = build_fim_tasks(read_corpus(run_dir / "data", "test"), per_type=cfg.eval.per_type,
                                seed=cfg.eval.seed, max_context_chars=cfg.eval.max_context_chars)
        if not tasks:
            raise ConfigError(f"no evaluation tasks could be built from the test split of {run_dir / 'data'}: "
                              f"the test repositories have no parseable functions or statements")
        write_tasks(tasks, tasks_path)
    tasks = read_tasks(tasks_path)
    print(f"{len(tasks)} tasks from the test split", file=sys.stderr)

    scores: dict[str, dict] = {}
    for name in models:
        if name == "most_common_line":
            predictor, model_id = MostCommonLinePredictor.fit_from_corpus(run_dir / "data"), name
        else:
            ckpt = _checkpoint_for(run_dir, name)
            predictor = Completer.load(ckpt, max_prompt_tokens=cfg.eval.max_prompt_tokens or None)
            model_id = str(ckpt.resolve())
        print(f"-- {name}", file=sys.stderr, flush=True)
        scores[name] = run_fim_eval(
            predictor, tasks, eval_dir / name, name=name, max_new_tokens=cfg.eval.max_new_tokens,
            mode=cfg.eval.mode, model_id=model_id, config=config_to_dict(cfg.eval),
            # samples of an older checkpoint (training went on since) are stale: start over
            force=_evaluated_model_id(eval_dir / name) not in (None, model_id))
    return scores


def _evaluated_model_id(model_eval_dir: Path) -> str | None:
    path = model_eval_dir / "generation.json"
    return json.loads(path.read_text()).get("model_id") if path.exists() else None


def _checkpoint_for(run_dir: Path, name: str) -> Path:
    from lightcoder.model.hf import resolve_checkpoint

    if name == "untrained":
        path = run_dir / "ckpt" / "step_000000"
        if not (path / "model.safetensors").exists():
            raise ConfigError(f"{path} is missing: the untrained baseline is saved when training starts")
        return path
    return resolve_checkpoint(run_dir)


def stage_report(cfg: RunConfig, run_dir: Path, *, started: float | None = None) -> str:
    from lightcoder.report import build_report

    heading("6/6 report")
    text = build_report(cfg, run_dir, elapsed_s=None if started is None else time.time() - started)
    (run_dir / "report.md").write_text(text)
    return text


def prepare_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, run_dir)
