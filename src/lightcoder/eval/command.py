"""`python -m lightcoder.eval <step>`: the benchmark harness from the command line.

    python -m lightcoder.eval list                                   registered tasks
    python -m lightcoder.eval run --task humaneval --model RUN --out DIR [--limit 20] [--workers 2]
    python -m lightcoder.eval generate --task T --model RUN --out DIR [--shard 0/2] [--n 10 --temperature 0.8]
    python -m lightcoder.eval execute --out DIR [--workers 4]        (reads DIR/config.json + samples)
    python -m lightcoder.eval score --out DIR
    python -m lightcoder.eval reference --task T --out DIR [--empty] canonical / empty completions
    python -m lightcoder.eval report DIR... [--md F] [--html F]      same as `lightcoder eval report`

--model takes a run dir, a checkpoint dir or any HF Llama-architecture checkpoint directory
(Completer.load; --template picks the FIM format, default: detected from the tokenizer).
--option KEY=VALUE passes task options (e.g. --option data=python.jsonl --option setting=bm25).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lightcoder.devices import add_device_flag, model_id_suffix


def _task_options(args) -> dict:
    options = {}
    for item in args.option or []:
        if "=" not in item:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.limit is not None:
        options["limit"] = args.limit
    return options


def _predictor(args):
    from lightcoder.infer.completer import Completer
    from lightcoder.infer.weight_dtype import describe_weights, weights_id_suffix

    kwargs = {"max_prompt_tokens": args.max_prompt_tokens or None}
    if args.template:
        kwargs["template"] = args.template
    completer = Completer.load(args.model, device=args.device, **kwargs)
    if completer.dtype_note != "as stored":
        print(f"{args.model}: {describe_weights(completer)}", file=sys.stderr)
    template = getattr(getattr(completer, "template", None), "name", "aixcoder")
    model_id = _model_path(args.model) + model_id_suffix(args.device)
    return completer, model_id + weights_id_suffix(completer.model, completer.dtype_note), template


def _model_path(model: str) -> str:
    """The checkpoint a --model path loads (a run dir's newest ckpt/step_N, so a run that trained on is another
    model id, not a resume); other paths (an HF dir, an adapter) as given, resolved."""
    from lightcoder.model.hf import CheckpointError, resolve_checkpoint

    try:
        return str(resolve_checkpoint(model).resolve())
    except (CheckpointError, OSError):
        return str(Path(model).resolve())


def _generation(args, model_id: str, template: str):
    from lightcoder.eval.runner import GenerationSettings

    return GenerationSettings(model_id=model_id, template=template, n=args.n, temperature=args.temperature,
                              top_p=args.top_p, seed=args.seed, max_new_tokens=args.max_new_tokens,
                              mode=args.mode, max_prompt_tokens=args.max_prompt_tokens,
                              frequency_penalty=args.frequency_penalty, presence_penalty=args.presence_penalty,
                              cache_weight=args.cache_weight)


def _print_summary(scores: dict) -> None:
    total = scores["summary"]["total"]
    shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in total.items()}
    print(f"{scores['task']}: {json.dumps(shown)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lightcoder.eval", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("list", help="registered tasks")
    for step in ("run", "generate", "reference"):
        s = sub.add_parser(step)
        s.add_argument("--task", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--limit", type=int, help="first N problems (recorded in the config)")
        s.add_argument("--option", action="append", metavar="KEY=VALUE")
        s.add_argument("--force", action="store_true")
        if step == "reference":
            s.add_argument("--empty", action="store_true", help="empty completions instead of the references")
            s.add_argument("--workers", type=int, default=2)
            continue
        s.add_argument("--model", required=True)
        s.add_argument("--template", default="")
        s.add_argument("--n", type=int, default=1)
        s.add_argument("--temperature", type=float, default=0.0)
        s.add_argument("--top-p", type=float, default=1.0)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--max-new-tokens", type=int, default=0)
        s.add_argument("--mode", default="", choices=("", "psm", "spm"))
        s.add_argument("--max-prompt-tokens", type=int, default=0)
        add_device_flag(s)
        s.add_argument("--frequency-penalty", type=float, default=0.0,
                       help="OpenAI's, over the ids generated so far (the run's eval uses eval.frequency_penalty)")
        s.add_argument("--presence-penalty", type=float, default=0.0)
        s.add_argument("--cache-weight", type=float, default=0.0,
                       help="n-gram cache over the text around the cursor, mixed into the choice (the run's "
                            "eval uses eval.cache_weight; 0 = off)")
        s.add_argument("--workers", type=int, default=2)
        s.add_argument("--shard", default="0/1", help="i/n: generate the i-th of n slices (generate only)")
    for step in ("execute", "score"):
        s = sub.add_parser(step)
        s.add_argument("--out", required=True)
        s.add_argument("--workers", type=int, default=2)
        s.add_argument("--force", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from lightcoder.eval import runner
    from lightcoder.eval.tasks import get_task, list_tasks

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        from lightcoder.eval.report_command import main as report_main

        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.step == "list":
            for name, desc in list_tasks().items():
                print(f"{name:32s} {desc}")
            return 0
        if args.step in ("execute", "score"):
            if args.step == "execute":
                runner.execute(args.out, workers=args.workers, force=args.force)
            _print_summary(runner.score(args.out))
            return 0
        task = get_task(args.task, **_task_options(args))
        if args.step == "reference":
            runner.reference_samples(task, args.out, empty=args.empty, force=args.force)
            runner.execute(args.out, workers=args.workers)
            _print_summary(runner.score(args.out))
            return 0
        predictor, model_id, template = _predictor(args)
        gen = _generation(args, model_id, template)
        if args.step == "generate":
            i, n = (int(x) for x in args.shard.split("/"))
            print(runner.generate(task, predictor, args.out, gen, force=args.force, shard=(i, n), progress=True))
            return 0
        _print_summary(runner.run_task(task, predictor, args.out, gen, workers=args.workers, force=args.force))
        return 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"lightcoder eval: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
