"""The one entry point: `lightcoder <command>`; a table of commands, imports done lazily per command.

    lightcoder quickstart [--minutes N] [--out DIR] [--corpus PATH ...]   every stage, end to end
    lightcoder data|tokenizer|pack|train|eval|report [--out DIR]          one stage over a run dir
    lightcoder complete RUN_OR_CKPT --prefix-file F [--suffix-file F]     one completion
    lightcoder config [--out DIR]                                         the resolved config
    lightcoder data report | eval report|run|list|... | serve | export | ablate    see MODULE_COMMANDS
    lightcoder finetune --base HF_DIR --corpus PATH ... --out RUN        adapt a released model
    lightcoder finetune demo [--minutes 10]                               the quickstart model on a new package

Every stage command also takes config overrides `--section.field VALUE` (e.g. `--train.lr 3e-4`,
`--pack.mix.ntp_rate 0.4`) and `--model-preset NAME`; unknown keys are errors. A run directory's
config.json is loaded first when it exists, so later commands continue the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lightcoder.devices import add_device_flag
from lightcoder.overrides import positive_minutes

DEFAULT_RUN_DIR = "run/quickstart"
# stage command -> its function in lightcoder.stages (imported lazily)
STAGE_FUNCTIONS = {"data": "stage_data", "tokenizer": "stage_tokenizer", "pack": "stage_pack",
                   "train": "stage_train", "eval": "stage_eval", "report": "stage_report"}
TRAIN_BUDGET_KEYS = ("train.max_minutes", "train.max_steps", "train.max_tokens")
# Commands that own their whole argument parsing: leading words -> (module with `main(argv) -> int`,
# how many of those words are consumed; main gets the rest). Checked before the stage parser.
_EVAL_STEPS = ("list", "run", "generate", "execute", "score", "reference")
MODULE_COMMANDS = {
    ("data", "report"): ("lightcoder.data.report_command", 2),
    ("eval", "report"): ("lightcoder.eval.report_command", 2),
    **{("eval", step): ("lightcoder.eval.command", 1) for step in _EVAL_STEPS},  # `eval run --task ..`
    ("serve",): ("lightcoder.serve.command", 1),
    ("export",): ("lightcoder.serve.export_command", 1),
    ("ablate",): ("lightcoder.ablate", 1),
    ("finetune",): ("lightcoder.finetune.command", 1),
    ("finetune", "demo"): ("lightcoder.finetune.demo", 2),
}
# `lightcoder --help` lists these too (each parses its own arguments: `lightcoder serve --help`)
MODULE_HELP = {
    "serve": "serve completions over HTTP: OpenAI, llama.cpp (/infill) and Ollama APIs, continuous batching",
    "export": "export a checkpoint as a Hugging Face directory or a GGUF file (llama.cpp, Ollama)",
    "ablate": "the paper's ablation: NTP / FIM / full recipe and file orderings at equal tokens over seeds",
    "finetune": "adapt a released code model to your repositories (LoRA, QLoRA, full), scored before/after; "
                "also: finetune demo",
}
STAGE_SUBCOMMANDS = {"data": "data report", "eval": "eval " + "|".join(("report",) + _EVAL_STEPS)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightcoder", description="Train, serve and evaluate "
                                     "aiXcoder-style code-completion models.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_run_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default=DEFAULT_RUN_DIR, help=f"run directory (default {DEFAULT_RUN_DIR})")
        p.add_argument("--corpus", nargs="+", metavar="PATH", help="source directories (default: the "
                       "Python standard library of this interpreter)")
        p.add_argument("--model-preset", help="model preset (lc-tiny, lc-quickstart, aixcoder-7b, ...)")
        p.add_argument("--force", action="store_true", help="rebuild the stage(s) even if finished")

    p = sub.add_parser("quickstart", help="run every stage end to end within a time budget")
    add_run_args(p)
    p.add_argument("--minutes", type=positive_minutes, default=15.0, help="wall-clock budget (default 15)")
    for name in STAGE_FUNCTIONS:
        more = f" (also: {STAGE_SUBCOMMANDS[name]})" if name in STAGE_SUBCOMMANDS else ""
        p = sub.add_parser(name, help=f"run the {name} stage over a run directory{more}")
        add_run_args(p)
        if name == "pack":
            p.add_argument("--stats", action="store_true", help="print the objective / language / "
                           "node-type / file-order distribution of the packed documents")
    p = sub.add_parser("config", help="print the resolved config (every key an override can set)")
    add_run_args(p)

    p = sub.add_parser("complete", help="one completion from the command line")
    p.add_argument("checkpoint", help="a run directory (its newest checkpoint) or a checkpoint directory")
    p.add_argument("--prefix-file", required=True, help="code before the cursor ('-' for stdin)")
    p.add_argument("--suffix-file", help="code after the cursor (omit for plain continuation)")
    p.add_argument("--path", default="", help="file path for the header (default: the prefix file's name)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--mode", choices=("spm", "psm"), default="spm", help="FIM prompt order (aiXcoder: spm)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--frequency-penalty", type=float,
                   help="default: the run's eval.frequency_penalty, as `lightcoder serve RUN` (else 0)")
    p.add_argument("--cache-weight", type=float,
                   help="the n-gram cache over the file (infer/ngram_cache.py); default: the run's eval.cache_weight")
    add_device_flag(p)
    for name, text in MODULE_HELP.items():  # listed here, dispatched by find_module_command before parsing
        sub.add_parser(name, help=text, add_help=False)
    return parser


def find_module_command(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, remaining argv) when argv starts with a MODULE_COMMANDS key, else None."""
    for words in sorted(MODULE_COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(words)]) == words:
            module, consumed = MODULE_COMMANDS[words]
            return module, argv[consumed:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from lightcoder.config import ConfigError

    module_command = find_module_command(argv)
    try:
        if module_command is not None:
            import importlib

            module, rest = module_command
            return importlib.import_module(module).main(rest)
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        if args.command == "complete":
            if rest:
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            return _cmd_complete(args)
        return _cmd_run(args, rest)
    except ConfigError as exc:
        print(f"lightcoder: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"lightcoder: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # permissions, a file where a directory belongs, ...: name the path and the fix
        print(f"lightcoder: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nlightcoder: interrupted; finished stages and the last checkpoint are kept — rerun the "
              "same command to resume", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and what to do. Example: FileExistsError(17, "File exists", "a.py") ->
    "a.py exists and is not a directory: choose another --out (a directory path)"."""
    path = exc.filename or "the path"
    if isinstance(exc, PermissionError):
        return f"permission denied on {path}: change its permissions or use another path"
    if isinstance(exc, FileExistsError):
        return f"{path} exists and is not a directory: choose another --out (a directory path)"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a directory: give a file path (or another --out)"
    if isinstance(exc, NotADirectoryError):
        return f"a file is in the way of {path}: a directory is needed there; choose another path"
    return f"{exc.strerror or exc} ({path})" if exc.filename else str(exc)


def _resolve_config(args: argparse.Namespace, rest: list[str]):
    from lightcoder.config import ConfigError, RunConfig, apply_overrides, load_run_config, parse_override_args
    from lightcoder.model.config import get_preset

    run_dir = Path(args.out)
    cfg = load_run_config(run_dir) if (run_dir / "config.json").exists() else RunConfig()
    if args.model_preset:
        cfg.model = get_preset(args.model_preset)
        cfg.model_preset = args.model_preset
    if args.corpus:
        cfg.data.sources = [str(Path(p)) for p in args.corpus]
    overrides = parse_override_args(rest)
    apply_overrides(cfg, overrides)
    if cfg.model.max_seq_len < cfg.pack.seq_len:  # caught here, not after data, tokenizer and pack ran
        raise ConfigError(f"model.max_seq_len ({cfg.model.max_seq_len}) is shorter than pack.seq_len "
                          f"({cfg.pack.seq_len}): pass --pack.seq_len {cfg.model.max_seq_len} (or less), or raise "
                          "--model.max_seq_len")
    return cfg, run_dir, overrides


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    from lightcoder import stages
    from lightcoder.config import config_to_dict

    cfg, run_dir, overrides = _resolve_config(args, rest)
    if args.command == "config":
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    if args.command == "quickstart":
        from lightcoder.quickstart import run_quickstart

        if not any(k in overrides for k in TRAIN_BUDGET_KEYS):
            cfg.train.max_minutes = 0.0  # let quickstart size training from what is left of --minutes
            cfg.train.max_steps = 0
            cfg.train.max_tokens = 0
        run_quickstart(cfg, run_dir, minutes=args.minutes, force=args.force)
        return 0
    if args.command != "data" and not run_dir.is_dir():  # every later stage reads what data wrote there
        raise ValueError(f"no run directory at {run_dir}: start one with `lightcoder data --out {run_dir}` "
                         f"(or `lightcoder quickstart --out {run_dir}`)")
    stages.prepare_run_dir(run_dir)
    started = time.time()
    result = getattr(stages, STAGE_FUNCTIONS[args.command])(cfg, run_dir, force=args.force)
    if args.command == "eval":
        result = stages.stage_report(cfg, run_dir)
    if args.command == "pack" and args.stats:
        from lightcoder.pack_stats import format_stats

        result = format_stats(result)
    if isinstance(result, str):
        print(result)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for the job, not one per rank
        print(f"{args.command} done in {time.time() - started:.1f}s -> {run_dir}", file=sys.stderr)
    return 0


def _cmd_complete(args: argparse.Namespace) -> int:
    from lightcoder.infer.completer import Completer
    from lightcoder.infer.penalties import check_cache_weight
    from lightcoder.infer.weight_dtype import describe_weights
    from lightcoder.serve.command import default_cache_weight, default_penalties

    frequency, presence = default_penalties(args.checkpoint, args.frequency_penalty, None)
    cache_weight = default_cache_weight(args.checkpoint, args.cache_weight)  # decoded as the server would
    check_cache_weight(cache_weight, prefix="--cache-weight: ")  # before the model loads
    prefix = _read_text_arg(args.prefix_file, "--prefix-file")
    suffix = _read_text_arg(args.suffix_file, "--suffix-file") if args.suffix_file else ""
    path = args.path or ("" if args.prefix_file == "-" else Path(args.prefix_file).name)
    completer = Completer.load(args.checkpoint, device=args.device)
    result = completer.complete(prefix, suffix, path=path, max_new_tokens=args.max_tokens, mode=args.mode,
                                temperature=args.temperature, frequency_penalty=frequency,
                                presence_penalty=presence, cache_weight=cache_weight)
    sys.stdout.write(result.text)
    if not result.text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()  # the completion first, then the stats line on stderr
    print(f"[{result.new_tokens} tokens in {result.seconds * 1000:.0f} ms, prompt {result.prompt_tokens} "
          f"tokens, stop: {result.stop_reason}; frequency penalty {frequency:g}, cache weight {cache_weight:g}; "
          f"{describe_weights(completer)}]",
          file=sys.stderr)
    return 0


def _read_text_arg(path: str, flag: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{flag} {path} is a directory: give the source file to complete")
    if not file.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{flag} {path} is not UTF-8 text; convert it (e.g. iconv -t utf-8)") from None


if __name__ == "__main__":
    raise SystemExit(main())
