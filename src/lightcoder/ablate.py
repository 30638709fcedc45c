"""`lightcoder ablate`: the paper's ablation as one command, at equal compute, over seeds.

    lightcoder ablate --out run/ablate [--minutes 5 | --tokens N] [--seeds 3] [--variants ntp,fim,full]
                      [--orderings random,path,content,dependency,mix] [--ordering-seeds 1]
                      [--variant NAME:key=value;key=value ...] [--corpus PATH ...] [--section.field VALUE ...]
    lightcoder ablate --out run/ablate --rescore [--eval.field VALUE ...]   # score the trained runs again

Variants change the training data (research/aixcoder-7b.md §3, §4):
    ntp            next-token prediction only (pack.mix.ntp_rate 1)
    fim            NTP + random character-span FIM (aiXcoder's finetune.py objective, at context level)
    lines          NTP + random FIM + the editor-shaped line spans: the default recipe without SFIM
    full           NTP + FIM + SFIM + line spans: the default recipe (fim/mix.py); full - lines is SFIM's part
    order-<s>      the full recipe with files of a repository in order <s> (random, path, content,
                   dependency, mix) and attention across file boundaries (train.document_mask false),
                   so that a window's earlier files are context, as in aiXcoder's packing
Every run trains the same number of tokens (--tokens, or --minutes converted once from the measured
speed of the first variant's model), with train.seed = the seed, and is scored on the same held-out
tasks (structured FIM tasks from the test repositories and HumanEval infilling; eval/builders.py).

Layout: OUT/base (corpus + tokenizer, shared), OUT/packs/<variant> (one pack per variant, shared by its
seeds), OUT/runs/<variant>-s<seed> (training + eval; data/tokenizer/shards are links). Finished stages
are skipped, so an interrupted ablation resumes. OUT/ablation.md and .json hold the table (ablate_report.py).
--rescore trains nothing: every trained run under OUT/runs is scored again with its own saved config and
this invocation's eval.* overrides (another decoding, e.g. --eval.frequency_penalty 1), and the table rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lightcoder.config import RunConfig, apply_overrides, load_run_config, parse_override_args, write_json_atomic
from lightcoder.overrides import positive_minutes


def _without_sfim() -> str:
    from lightcoder.pack_config import DEFAULT_SPAN_WEIGHTS

    return json.dumps({k: v for k, v in DEFAULT_SPAN_WEIGHTS.items() if k != "sfim"})


OBJECTIVE_VARIANTS: dict[str, dict[str, str]] = {
    "ntp": {"pack.mix.ntp_rate": "1.0"},
    "fim": {"pack.mix.span_weights": '{"random": 1.0}'},
    "lines": {"pack.mix.span_weights": _without_sfim()},
    "full": {},
}
ORDERINGS = ("random", "path", "content", "dependency", "mix")
ABLATION_EVAL = {"eval.humaneval_limit": "0", "eval.santacoder_fim_limit": "0"}  # the FIM table only


def ordering_variant(strategy: str) -> dict[str, str]:
    return {"pack.sampling": strategy, "train.document_mask": "false"}


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """"NAME:key=value;key=value" -> (NAME, {key: value}). Example: "ntp50:pack.mix.ntp_rate=0.5"."""
    name, _, body = spec.partition(":")
    if not name or not body:
        raise ValueError(f"--variant {spec!r}: use NAME:section.field=VALUE;section.field=VALUE")
    pairs = [p.split("=", 1) for p in body.split(";") if p]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--variant {spec!r}: every setting needs '=' (section.field=VALUE)")
    return name, {k.strip(): v.strip() for k, v in pairs}


def plan_runs(args: argparse.Namespace) -> list[tuple[str, dict[str, str], int]]:
    """(variant name, overrides, seed) of every run, objective variants first."""
    variants = {name: OBJECTIVE_VARIANTS[name] for name in _names(args.variants, OBJECTIVE_VARIANTS)}
    variants.update(parse_variant(spec) for spec in args.variant or [])
    runs = [(name, ov, seed) for name, ov in variants.items() for seed in range(args.seeds)]
    for strategy in _names(args.orderings, ORDERINGS):
        runs += [(f"order-{strategy}", ordering_variant(strategy), seed) for seed in range(args.ordering_seeds)]
    if not runs:
        raise ValueError("nothing to run: give --variants and/or --orderings")
    return runs


def _names(value: str, known) -> list[str]:
    names = [] if value in ("", "none") else [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown name(s) {unknown}: choose from {sorted(known)} (or 'none')")
    return names


def link_stages(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    """dst/<name> -> src/<name> symlinks and src's stages.json records for them, so stage checks pass."""
    from lightcoder.stages import read_stages

    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = dst / name
        if not link.exists():
            link.symlink_to((src / name).resolve(), target_is_directory=True)
    records = read_stages(src)
    stages = read_stages(dst)
    stages.update({name: records[name] for name in names if name in records})
    write_json_atomic(dst / "stages.json", stages)


def run_ablation(args: argparse.Namespace, rest: list[str]) -> Path:
    from lightcoder import stages
    from lightcoder.ablate_report import collect, write_report

    out = Path(args.out)
    common = {**ABLATION_EVAL, **parse_override_args(rest)}
    runs = plan_runs(args)
    base_dir = out / "base"
    base_cfg = make_config(args, common, {})
    stages.stage_data(base_cfg, base_dir)
    stages.stage_tokenizer(base_cfg, base_dir)
    tokens = args.tokens
    done_runs = []
    for i, (name, overrides, seed) in enumerate(runs):
        cfg = make_config(args, common, overrides)
        pack_dir = out / "packs" / name
        link_stages(base_dir, pack_dir, ("data", "tokenizer"))
        stages.stage_pack(cfg, pack_dir)
        if not tokens:
            tokens = budget_tokens(out, cfg, pack_dir, args.minutes)
        run_dir = out / "runs" / f"{name}-s{seed}"
        link_stages(pack_dir, run_dir, ("data", "tokenizer", "shards"))
        cfg.train.seed, cfg.train.max_tokens, cfg.train.max_minutes, cfg.train.max_steps = seed, tokens, 0.0, 0
        print(f"\n=== ablate {i + 1}/{len(runs)}: {name} seed {seed}, {tokens:,} tokens ===", file=sys.stderr)
        stages.stage_train(cfg, run_dir)
        models = ("trained", "untrained", "most_common_line") if i == 0 else ("trained",)
        stages.stage_eval(cfg, run_dir, models=models)
        done_runs.append((name, seed, run_dir))
        write_report(out, collect(finished_runs(out, done_runs)), tokens=tokens)  # the table so far
    return out / "ablation.md"


def rescore_runs(out: Path, rest: list[str]) -> Path:
    """Score every trained run under OUT/runs again: its saved config with the eval.* overrides of `rest`.
    The first run also rescores the untrained model and the most-common-line baseline; the table is
    rewritten with the tokens the runs trained (trained_tokens)."""
    from lightcoder import stages
    from lightcoder.ablate_report import collect, write_report

    overrides = parse_override_args(rest)
    not_eval = sorted(k for k in overrides if not k.startswith("eval."))
    if not_eval:
        raise ValueError(f"--rescore changes only eval.* settings (the runs are already trained), got {not_eval}: "
                         "drop them, or run the ablation into a new --out")
    runs = [r for r in finished_runs(out, []) if (r[2] / "ckpt").is_dir() and (r[2] / "config.json").is_file()]
    if not runs:
        raise ValueError(f"--rescore: no trained runs under {out / 'runs'} (run `lightcoder ablate --out {out}` first)")
    for i, (name, seed, run_dir) in enumerate(runs):
        print(f"\n=== rescore {i + 1}/{len(runs)}: {name} seed {seed} ===", file=sys.stderr)
        cfg = apply_overrides(load_run_config(run_dir), overrides)
        stages.stage_eval(cfg, run_dir, models=("trained", "untrained", "most_common_line") if i == 0 else ("trained",))
    write_report(out, collect(runs), tokens=trained_tokens(out, runs[0][2]))
    return out / "ablation.md"


def trained_tokens(out: Path, run_dir: Path) -> int:
    """The per-run token budget: the earlier table's (OUT/ablation.json) or OUT/budget.json's, else what the
    run's train summary says it trained."""
    for path in (out / "ablation.json", out / "budget.json", run_dir / "train_summary.json"):
        if path.is_file():
            return int(json.loads(path.read_text()).get("tokens", 0))
    return 0


def finished_runs(out: Path, planned: list[tuple[str, int, Path]]) -> list[tuple[str, int, Path]]:
    """This invocation's runs, then every other run dir under OUT/runs (an earlier invocation's extra
    variants), so one table holds them all. Example: OUT/runs/temp1-s0 -> ("temp1", 0, path)."""
    seen = {path.resolve() for _, _, path in planned}
    extra = []
    for path in sorted((out / "runs").glob("*-s*")):
        name, _, seed = path.name.rpartition("-s")
        if path.resolve() not in seen and seed.isdigit():
            extra.append((name, int(seed), path))
    return list(planned) + extra


def make_config(args: argparse.Namespace, common: dict[str, str], overrides: dict[str, str]) -> RunConfig:
    """A fresh RunConfig with the preset, corpus, the ablation's common overrides, then the variant's."""
    from lightcoder.model.config import get_preset

    cfg = RunConfig()
    if args.model_preset:
        cfg.model, cfg.model_preset = get_preset(args.model_preset), args.model_preset
    if args.corpus:
        cfg.data.sources = [str(Path(p)) for p in args.corpus]
    return apply_overrides(cfg, {**common, **overrides})


def budget_tokens(out: Path, cfg: RunConfig, pack_dir: Path, minutes: float) -> int:
    """Training tokens per run: --minutes x the measured tokens/s of this model on these windows,
    measured once and kept in OUT/budget.json (so every run, and a resumed ablation, trains the same)."""
    path = out / "budget.json"
    if path.exists():
        return json.loads(path.read_text())["tokens"]
    from lightcoder.train.speed import measure_tokens_per_s

    rate = measure_tokens_per_s(cfg, pack_dir)
    tokens = int(minutes * 60 * rate)
    write_json_atomic(path, {"tokens": tokens, "minutes": minutes, "tokens_per_s": round(rate, 1),
                             "measured": time.strftime("%Y-%m-%d %H:%M:%S")})
    return tokens


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightcoder ablate", description="The paper's ablation: NTP / FIM / "
                                "SFIM and file orderings at equal tokens, over seeds, on the same held-out tasks.")
    p.add_argument("--out", default="run/ablate", help="output directory (default run/ablate)")
    p.add_argument("--corpus", nargs="+", metavar="PATH", help="source dirs (default: the Python stdlib)")
    p.add_argument("--model-preset", help="model preset (default lc-quickstart)")
    p.add_argument("--minutes", type=positive_minutes, default=5.0, help="training minutes per run, converted once to "
                   "tokens from the measured speed (default 5)")
    p.add_argument("--tokens", type=int, default=0, help="training tokens per run (overrides --minutes)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per objective variant (default 3)")
    p.add_argument("--variants", default="ntp,fim,lines,full", help="objective variants (default ntp,fim,lines,full)")
    p.add_argument("--variant", action="append", metavar="NAME:key=value;...", help="an extra variant")
    p.add_argument("--orderings", default=",".join(ORDERINGS), help="file orderings to run ('none' to skip)")
    p.add_argument("--ordering-seeds", type=int, default=1, help="seeds per ordering (default 1)")
    p.add_argument("--rescore", action="store_true", help="train nothing: score the trained runs under OUT/runs "
                   "again with the given --eval.* settings and rewrite the table")
    return p


def main(argv: list[str]) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.seeds < 1 or args.ordering_seeds < 0 or args.minutes <= 0 or args.tokens < 0:
        raise ValueError("--seeds must be >= 1, --ordering-seeds >= 0, --minutes > 0 and --tokens >= 0")
    report = rescore_runs(Path(args.out), rest) if args.rescore else run_ablation(args, rest)
    print(report.read_text())
    print(f"ablation table written to {report}", file=sys.stderr)
    return 0

