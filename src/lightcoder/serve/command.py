"""`lightcoder serve RUN_OR_CKPT [--host H] [--port P] ...`: load a model and serve it over HTTP.

Example: lightcoder serve run/quickstart --port 8000 --workspace ~/src/myproject
then open http://127.0.0.1:8000/ (playground) or point an OpenAI client at http://127.0.0.1:8000/v1.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from lightcoder.devices import add_device_flag
from lightcoder.infer.penalties import check_cache_weight
from lightcoder.serve.schemas import Limits


def tcp_port(text: str) -> int:
    """argparse type: 0-65535 (0 = any free port), refused before the model loads."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0-65535, got {port}")
    return port


def port_taken(host: str, port: int) -> str | None:
    """Why host:port cannot be listened on (e.g. "Address already in use"), or None. Port 0 is always free."""
    if port == 0:
        return None
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is free
            probe.bind((host, port))
    except OSError as e:
        return e.strerror or str(e)
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightcoder serve", description="Serve code completions over HTTP "
                                "(OpenAI /v1/completions with suffix, llama.cpp /infill and /completion, Ollama "
                                "/api/generate with suffix, playground at /), decoding up to --parallel requests "
                                "together (continuous batching).")
    p.add_argument("checkpoint", help="run dir, checkpoint dir, or an HF Llama dir (tokenizer.json or tokenizer.model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=tcp_port, default=8000)
    p.add_argument("--model-name", default="lightcoder", help="the model id clients send (default lightcoder)")
    p.add_argument("--api-key", default=os.environ.get("LIGHTCODER_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $LIGHTCODER_API_KEY, else open)")
    p.add_argument("--template", help="FIM template (aixcoder, starcoder, deepseek, qwen2.5-coder, codellama); "
                   "default: detected from the tokenizer")
    p.add_argument("--workspace", help="directory whose source files give cross-file context (BM25)")
    p.add_argument("--max-prompt-tokens", type=int, default=0, help="prompt budget (0 = the model's context)")
    p.add_argument("-np", "--parallel", type=int, default=4,
                   help="slots: requests decoded together in one batch (default 4); more wait in a queue")
    p.add_argument("--draft-tokens", type=int, default=4, help="prompt-lookup ids greedy requests check per "
                   "step (exact speculative decoding; 0 = off)")
    p.add_argument("--cache-entries", type=int, default=8,
                   help="prefix-KV buffers kept (LRU; at least --parallel + 1)")
    p.add_argument("--sticky-lines", type=int, default=16,
                   help="cut long prompts at multiples of this many lines, so keystrokes keep the KV cache")
    p.add_argument("--frequency-penalty", type=float, help="for requests that send none (OpenAI's, over the ids "
                   "generated so far); default: the run's eval.frequency_penalty when serving a lightcoder run, else 0")
    p.add_argument("--presence-penalty", type=float, help="the same for presence_penalty")
    p.add_argument("--cache-weight", type=float, help="the n-gram cache over the text around the cursor, mixed "
                   "into the choice (infer/ngram_cache.py; 0 = off); default: the run's eval.cache_weight, else 0")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto", help="the weights' dtype; auto: as stored, "
                   "except bf16/fp16 weights on a CPU without fast half-precision products, read in fp32 when both "
                   "copies (the decoder keeps a transposed one) fit in half the free memory (infer/weight_dtype.py)")
    add_device_flag(p)
    defaults = Limits()
    p.add_argument("--max-tokens-limit", type=int, default=defaults.max_tokens_limit)
    p.add_argument("--max-prompt-chars", type=int, default=defaults.max_prompt_chars)
    p.add_argument("--max-queue", type=int, default=defaults.max_queue)
    p.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="wall time per generation")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    if problem := port_taken(args.host, args.port):  # before the model loads, not after the banner
        parser.error(f"cannot listen on {args.host}:{args.port} ({problem}); choose another --port or --host")
    frequency, presence = default_penalties(args.checkpoint, args.frequency_penalty, args.presence_penalty)
    for name, value in (("--frequency-penalty", frequency), ("--presence-penalty", presence)):
        if not -2.0 <= value <= 2.0:
            parser.error(f"{name} must be in [-2, 2] (OpenAI's range), got {value:g}")
    cache_weight = default_cache_weight(args.checkpoint, args.cache_weight)
    try:
        check_cache_weight(cache_weight, prefix="--cache-weight: ")
    except ValueError as exc:
        parser.error(str(exc))
    import torch
    import uvicorn

    from lightcoder.infer.completer import Completer
    from lightcoder.infer.retrieval import ChunkIndex, workspace_files
    from lightcoder.infer.weight_dtype import describe_weights
    from lightcoder.serve.app import ServerConfig, create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    completer = Completer.load(args.checkpoint, device=args.device, dtype=args.dtype, template=args.template,
                               max_prompt_tokens=args.max_prompt_tokens or None,
                               cache_entries=args.cache_entries, sticky_lines=args.sticky_lines)
    index = None
    if args.workspace:
        files = workspace_files(args.workspace)
        index = ChunkIndex.from_files(files)
        print(f"workspace {args.workspace}: {len(files)} files, {len(index)} chunks", file=sys.stderr)
    limits = Limits(max_prompt_chars=args.max_prompt_chars, max_tokens_limit=args.max_tokens_limit,
                    max_queue=args.max_queue, max_seconds=args.max_seconds)
    app = create_app(completer, ServerConfig(model_name=args.model_name, api_key=args.api_key, limits=limits,
                                             workspace_index=index, parallel=args.parallel,
                                             draft_tokens=args.draft_tokens, model_path=str(args.checkpoint),
                                             frequency_penalty=frequency, presence_penalty=presence,
                                             cache_weight=cache_weight))
    print(f"lightcoder serve: {args.checkpoint} as {args.model_name!r} (template {completer.template.name}, "
          f"{args.device}, {describe_weights(completer)}) on "
          f"http://{args.host}:{args.port}/ with {args.parallel} slots, frequency penalty {frequency:g}, "
          f"cache weight {cache_weight:g}  (playground "
          "at /, OpenAI base_url .../v1, llama.cpp /infill, Ollama /api/generate)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def default_penalties(checkpoint: str, frequency: float | None, presence: float | None) -> tuple[float, float]:
    """The penalties for requests that send none: the flags, else the eval settings of the lightcoder run
    that holds the checkpoint (RUN or RUN/ckpt/step_N; so the server decodes as the run's eval measured),
    else 0 (OpenAI's default; an HF directory)."""
    from lightcoder.config import run_eval_section

    run_eval = run_eval_section(checkpoint)
    return (float(run_eval.get("frequency_penalty", 0.0)) if frequency is None else frequency,
            float(run_eval.get("presence_penalty", 0.0)) if presence is None else presence)


def default_cache_weight(checkpoint: str, weight: float | None) -> float:
    """The n-gram cache weight: the flag, else the run's eval.cache_weight (as default_penalties), else 0."""
    from lightcoder.config import run_eval_section

    return float(run_eval_section(checkpoint).get("cache_weight", 0.0)) if weight is None else weight
