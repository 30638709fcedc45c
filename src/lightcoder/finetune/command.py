"""`lightcoder finetune`: adapt a released Llama-architecture code model to your own repositories.

    lightcoder finetune --base HF_DIR --corpus PATH ... --out RUN [--method lora|qlora|full]
                        [--template auto|aixcoder|starcoder|...] [--force] [--section.field VALUE ...]

Stages over RUN, each skipped when finished, so an interrupted run resumes (training from its newest
checkpoint):

    RUN/data/     the corpus through the curation steps (licence, filters, dedup, PII, syntax, ...)
    RUN/split/    files of each repository: train / valid / held-out (finetune/data.py)
    RUN/shards/   context-level NTP + FIM + SFIM windows in the base's tokenizer and template
    RUN/ckpt/     LoRA: adapter checkpoints (finetune/lora_loop.py); full: train/loop.py checkpoints
    RUN/adapter/  the final adapter in peft's format (LoRA)
    RUN/eval/     base and tuned model on held-out and general FIM tasks
    RUN/report.md the before/after table;  RUN/finetune.json  what each stage was built from

A finished stage built from other settings is refused (use --force or another --out); budgets
(train.max_minutes / max_steps / max_tokens) and eval settings may change between runs.

Full fine-tuning on several devices: prepare the data in one process, then train under torchrun
(every rank trains, FSDP2 or DDP; rank 0 alone writes the records, evaluates and reports):

    lightcoder finetune --base B --corpus C --out RUN --method full --prepare-only
    torchrun --standalone --nproc_per_node 2 -m lightcoder finetune --out RUN --train.parallel fsdp
Example: lightcoder finetune --base run/base/ckpt/step_001766 --corpus ~/src/myrepo --out run/ft --train.max_minutes 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from lightcoder.artifacts import is_done, write_json_atomic, write_text_atomic
from lightcoder.config import ConfigError, apply_overrides, config_from_dict, parse_override_args
from lightcoder.finetune.config import METHODS, STAGE_KEYS, FinetuneConfig, json_ready, stage_values
from lightcoder.finetune.deploy import RUN_FILE

STAGE_DIRS = ("data", "split", "shards", "ckpt", "adapter", "eval", "merged")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightcoder finetune", description="Fine-tune a released Llama-architecture "
                                "code model on your repositories with (S)FIM, in the model's own FIM format.")
    p.add_argument("--base", help="HF model dir (config.json, *.safetensors, tokenizer files)")
    p.add_argument("--corpus", nargs="+", metavar="PATH", help="directories, git repositories or archives")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--method", choices=METHODS, help="lora (default), qlora (4-bit base, CUDA) or full")
    p.add_argument("--template", help="FIM template: auto (default: from the tokenizer's special tokens), "
                   "aixcoder, starcoder, deepseek, qwen2.5-coder, codellama")
    p.add_argument("--force", action="store_true", help="rebuild every stage of RUN from scratch")
    p.add_argument("--prepare-only", action="store_true", help="stop after packing (then train under torchrun)")
    return p


def resolve_config(args: argparse.Namespace, rest: list[str]) -> FinetuneConfig:
    """Defaults, then RUN/finetune.json's config (a rerun), then the flags and dotted overrides."""
    run = Path(args.out)
    saved = run / RUN_FILE
    cfg = FinetuneConfig()
    if saved.exists() and not args.force:
        cfg = config_from_dict(FinetuneConfig, json.loads(saved.read_text())["config"])
    flags = {"base": args.base, "method": args.method, "template": args.template}
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, str(Path(value).expanduser().resolve()) if key == "base" else value)
    if args.corpus:
        cfg.corpus = [str(Path(p).expanduser().resolve()) for p in args.corpus]
    apply_overrides(cfg, parse_override_args(rest))
    try:
        cfg.__post_init__()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not cfg.base or not cfg.corpus:
        raise ConfigError("lightcoder finetune needs --base HF_DIR and --corpus PATH ... (a new --out) or the --out "
                          "of an earlier fine-tune to resume")
    return cfg


def check_record(cfg: FinetuneConfig, run: Path) -> dict:
    """RUN/finetune.json's stage records; ConfigError when a finished stage was built differently."""
    path = run / RUN_FILE
    record = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    for stage, values in record.get("stages", {}).items():
        if stage not in STAGE_KEYS or not (run / stage).exists():
            continue
        now, defaults = stage_values(cfg, stage), stage_values(FinetuneConfig(), stage)
        changed = [k for k in now if now[k] != values.get(k, defaults[k])]  # a key added since: its default
        if changed:
            raise ConfigError(f"{run / stage} was built with other {', '.join(changed)}; rerun with --force to "
                              f"rebuild {run}, or use a new --out")
    return record


def save_record(cfg: FinetuneConfig, run: Path, record: dict, **fields) -> None:
    record.update(config=json_ready(cfg), method=cfg.method, base=cfg.base, **fields)
    write_json_atomic(run / RUN_FILE, record, sort_keys=False)


def stage(title: str) -> None:
    print(f"\n== finetune: {title} ==", file=sys.stderr, flush=True)


def check_launch(cfg: FinetuneConfig, run: Path, *, force: bool, prepare_only: bool) -> int:
    """The number of ranks (torchrun's WORLD_SIZE); ConfigError for a multi-rank launch that cannot work."""
    from lightcoder.train.distributed import env_world_size

    world = env_world_size()
    if world == 1:
        return 1
    if cfg.method != "full":
        raise ConfigError(f"--method {cfg.method} trains in one process; run it without torchrun, or use "
                          "--method full to train every weight on several ranks")
    missing = [name for name in ("data", "split", "shards") if not is_done(run / name)]
    if force or prepare_only or missing:
        raise ConfigError(f"under torchrun the data stages must be ready in {run} (missing: {', '.join(missing) or '-'}; "
                          "--force / --prepare-only are one-process options): run `lightcoder finetune ... --out "
                          f"{run} --method full --prepare-only` once without torchrun, then launch torchrun with "
                          f"--out {run}")
    return world


def run_finetune(cfg: FinetuneConfig, run: Path, *, force: bool = False, prepare_only: bool = False) -> str:
    from lightcoder.finetune.base import open_base
    from lightcoder.finetune.data import run_curation, run_split

    world = check_launch(cfg, run, force=force, prepare_only=prepare_only)
    if world > 1:
        return _run_distributed(cfg, run)
    started = time.time()
    if force and run.exists():
        for name in STAGE_DIRS:
            shutil.rmtree(run / name, ignore_errors=True)
        for name in (RUN_FILE, "metrics.jsonl", "report.md", "train_summary.json"):
            (run / name).unlink(missing_ok=True)
    base = open_base(cfg.base, cfg.template)
    if cfg.method == "qlora":
        _check_qlora(cfg)
    if cfg.pack.seq_len > base.model_cfg.max_seq_len:
        print(f"pack.seq_len {cfg.pack.seq_len} -> {base.model_cfg.max_seq_len}: the base's context "
              "(max_position_embeddings)", file=sys.stderr)
        apply_overrides(cfg, {"pack.seq_len": str(base.model_cfg.max_seq_len)})
    run.mkdir(parents=True, exist_ok=True)
    record = check_record(cfg, run)
    fields = {"template": base.template.name, "base_fingerprint": base.fingerprint()}
    save_record(cfg, run, record, **fields)
    print(f"base {base.path}: {base.model_cfg.n_layers} layers, dim {base.model_cfg.dim}, vocab "
          f"{base.model_cfg.vocab_size}; tokenizer {type(base.tokenizer).__name__}, template {base.template.name}",
          file=sys.stderr)

    stage("1/5 data: curation steps")
    run_curation(cfg, run / "data")
    _record_stage(cfg, run, record, "data")
    stage("2/5 split: train / valid / held-out files")
    split = run_split(cfg.split, run / "data", run / "split")
    _record_stage(cfg, run, record, "split")
    print(f"files: train {split['train']['files']}, valid {split['valid']['files']}, held out {split['test']['files']}",
          file=sys.stderr)
    stage(f"3/5 pack: NTP / FIM / SFIM windows in {base.template.name}'s format")
    from lightcoder.finetune.pack import run_finetune_pack

    run_finetune_pack(base, cfg.pack, run / "split", run / "shards")
    _record_stage(cfg, run, record, "shards")
    if prepare_only:
        print(f"data ready in {run}/shards; train with the same command without --prepare-only (or under "
              "torchrun for --method full)", file=sys.stderr)
        return ""
    stage(f"4/5 train: {cfg.method}")
    _record_stage(cfg, run, record, "ckpt")
    meta = {"base": str(base.path), "base_fingerprint": fields["base_fingerprint"], "template": base.template.name}
    train = _train(base, cfg, run, meta)
    write_json_atomic(run / "train_summary.json", train)
    return _finish(base, cfg, run, record, fields, split, train, started)


def _finish(base, cfg: FinetuneConfig, run: Path, record: dict, fields: dict, split: dict, train: dict,
            started: float) -> str:
    stage("5/5 eval: base vs tuned on held-out files and the general set")
    results = _evaluate(base, cfg, run, train) if cfg.eval.enabled else {}
    write_json_atomic(run / "eval" / "results.json", results) if results else None
    from lightcoder.finetune.report import build_report

    text = build_report({**record, **fields}, split, train, results, run)
    write_text_atomic(run / "report.md", text)
    print(f"finetune done in {(time.time() - started) / 60:.1f} min -> {run}/report.md", file=sys.stderr)
    return text


def _run_distributed(cfg: FinetuneConfig, run: Path) -> str:
    """Full fine-tuning on every rank of a torchrun launch over prepared data; rank 0 then evaluates and
    writes the report (the other ranks return "")."""
    from lightcoder.artifacts import read_done
    from lightcoder.finetune.base import open_base
    from lightcoder.train.distributed import barrier, init_distributed, shutdown_distributed

    started = time.time()
    env = init_distributed(cfg.train.device)
    base = open_base(cfg.base, cfg.template)
    record = check_record(cfg, run)
    fields = {"template": base.template.name, "base_fingerprint": base.fingerprint()}
    if env.is_main:
        stage(f"4/5 train: full, {env.world_size} ranks ({cfg.train.parallel})")
        _record_stage(cfg, run, record, "ckpt")
    barrier(env)
    train = _train(base, cfg, run, {})
    shutdown_distributed()
    if not env.is_main:
        return ""
    write_json_atomic(run / "train_summary.json", train)
    return _finish(base, cfg, run, record, fields, read_done(run / "split"), train, started)


def _record_stage(cfg: FinetuneConfig, run: Path, record: dict, stage_name: str) -> None:
    record.setdefault("stages", {})[stage_name] = stage_values(cfg, stage_name)
    write_json_atomic(run / RUN_FILE, record, sort_keys=False)


def _check_qlora(cfg: FinetuneConfig) -> None:
    import torch

    if cfg.train.device == "cpu" or not torch.cuda.is_available():
        raise ConfigError("--method qlora quantizes the base to 4-bit NF4 with bitsandbytes, which needs a CUDA GPU; "
                          "this machine has none: use --method lora (the base in its own dtype) or run on a GPU")


def _train(base, cfg: FinetuneConfig, run: Path, meta: dict) -> dict:
    if cfg.method in ("lora", "qlora"):
        from lightcoder.finetune.lora_loop import train_lora

        return train_lora(base, cfg, run / "shards", run, meta)
    from lightcoder.train.loop import train

    # full fine-tuning: the pretraining loop (FSDP2 / DDP under torchrun) from the base's weights;
    # block-causal masks split documents at <s> (id 1): aiXcoder-layout bases only
    tcfg = dataclasses.replace(cfg.train, init_from=str(base.path),
                               document_mask=cfg.train.document_mask and base.doc_start_id == 1)
    return train(tcfg, base.model_cfg, shards_dir=run / "shards", tokenizer_dir=base.path, out_dir=run)


def _evaluate(base, cfg: FinetuneConfig, run: Path, train: dict) -> dict:
    from lightcoder.finetune.evaluate import evaluate_models, free_memory

    if cfg.method == "full":
        from lightcoder.model.hf import load_checkpoint, resolve_checkpoint

        ckpt = resolve_checkpoint(run)

        def tune(holder):  # the trained weights (saved in fp32), in the base's dtype on its device, loaded
            weight = holder.model.output.weight  # once the base (holder.model, its last reference) is dropped
            dtype, device = weight.dtype, weight.device
            holder.model = weight = None
            free_memory(device)
            return load_checkpoint(ckpt, device=device, dtype=dtype)[0]

        tuned_id = f"full:{ckpt.resolve()}:{train.get('steps')}"
    else:
        from lightcoder.finetune.lora import merged_model

        adapter = run / "adapter"
        stamp = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
        tune, tuned_id = (lambda holder: merged_model(holder.model, adapter)), f"lora:{adapter.resolve()}:{stamp}"
    return evaluate_models(base, tune, cfg.eval, run / "split", run / "eval", tuned_id=tuned_id,
                           device=cfg.train.device)


def main(argv: list[str]) -> int:
    args, rest = build_parser().parse_known_args(argv)
    cfg = resolve_config(args, rest)
    text = run_finetune(cfg, Path(args.out), force=args.force, prepare_only=args.prepare_only)
    if text:
        print(text)
    return 0


__all__ = ["main", "run_finetune", "resolve_config", "is_done"]
