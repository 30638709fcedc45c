"""Training throughput: lightcoder's Transformer vs transformers' LlamaForCausalLM, same everything else.

Both models get the same shape (our ModelConfig -> LlamaConfig through lightcoder.model.hf.hf_config), the
same initial weights (ours, renamed), the same batches (random tokens, or windows of a packed shards dir),
the same step (lightcoder.train.loop.train_step: autocast, loss, backward, grad clip, fused AdamW with the
same parameter groups), the same dtype, batch and threads. The HF loss is computed from its logits exactly
as ours (fp32 cross-entropy over all positions). Rounds alternate between the two models so that load
from other processes hits both alike; the table reports the median step time over all timed steps.
Peak RSS is measured in a separate short process per model (ru_maxrss is per process).

    .venv/bin/python benchmarks/bench_train.py                       # lc-quickstart, seq 512, batch 8, bf16
    .venv/bin/python benchmarks/bench_train.py --dtype fp32 --steps 5 --rounds 2
    .venv/bin/python benchmarks/bench_train.py --shards RUN/shards --preset lc-tiny --seq-len 128
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def build_models(args, which: tuple[str, ...] = ("ours", "hf")):
    """{name: (module, forward)}; both start from our init_weights(0), HF's copy renamed."""
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import hf_config, to_hf_name
    from lightcoder.model.llama import Transformer

    cfg = get_preset(args.preset, max_seq_len=max(args.seq_len, get_preset(args.preset).max_seq_len))
    ours = Transformer(cfg)
    ours.init_weights(seed=0)
    models = {"ours": (ours, ours)}
    if "hf" in which:
        import transformers

        hf_dict = {k: v for k, v in hf_config(cfg, torch.float32).items() if k not in ("architectures", "model_type")}
        hf_cfg = transformers.LlamaConfig(**hf_dict)
        hf_cfg._attn_implementation = "sdpa"
        hf = transformers.LlamaForCausalLM(hf_cfg)
        hf.load_state_dict({to_hf_name(k): v for k, v in ours.state_dict().items()}, strict=True)
        hf.train()

        def hf_forward(inputs, targets):  # the same loss as Transformer.forward(inputs, targets)
            logits = hf(input_ids=inputs, use_cache=False).logits  # (B, T, V)
            return logits, F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

        models["hf"] = (hf, hf_forward)
    return cfg, {name: models[name] for name in which}


def make_batches(args, vocab_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from lightcoder.train.loader import WindowLoader

    n = args.warmup + args.steps
    if args.shards:
        from lightcoder.packing import open_shard

        windows = open_shard(args.shards, "train")
        if windows.shape[1] != args.seq_len:
            print(f"note: using the shards' seq_len {windows.shape[1]}", file=sys.stderr)
    else:
        rng = np.random.default_rng(0)
        windows = rng.integers(0, vocab_size, (max(n * args.batch_size, args.batch_size), args.seq_len),
                               dtype=np.int64).astype(np.uint32)
    loader = WindowLoader(windows, args.batch_size, seed=0)
    return [loader.next_batch() for _ in range(n)]


def time_steps(model, forward, optimizer, batches, args) -> list[float]:
    from lightcoder.train.loop import train_step

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    times = []
    for inputs, targets in batches:
        t0 = time.perf_counter()
        train_step(forward, optimizer, inputs, targets, autocast=autocast, grad_clip=1.0)
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_self_mb() -> float:
    """This process's peak RSS: VmHWM (per address space; ru_maxrss would include the parent's at fork)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux KiB; fallback elsewhere


def peak_rss_mb(which: str, args) -> float:
    """Peak RSS of a fresh process that builds one model and runs warmup + 2 steps."""
    cmd = [sys.executable, __file__, "--only", which, "--preset", args.preset, "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--threads", str(args.threads),
           "--steps", "2", "--warmup", "1", "--rounds", "1"]
    if args.shards:
        cmd += ["--shards", args.shards]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="lc-quickstart")
    p.add_argument("--seq-len", type=int, default=512, help="window length; the model sees seq_len - 1 tokens")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--steps", type=int, default=6, help="timed steps per model per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model before the first round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, hf, ours, hf, ...)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--shards", default="", help="a packed shards dir to take the train windows from")
    p.add_argument("--no-rss", action="store_true", help="skip the per-model peak RSS subprocesses")
    p.add_argument("--only", choices=("ours", "hf"), help=argparse.SUPPRESS)  # RSS child process
    args = p.parse_args()

    from lightcoder.train.config import TrainConfig
    from lightcoder.train.optim import build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg, models = build_models(args, (args.only,) if args.only else ("ours", "hf"))
    batches = make_batches(args, cfg.vocab_size)
    if not args.only:  # same weights, same batch: the two losses must agree before any timing
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")
        with torch.no_grad(), autocast:
            losses = {name: forward(*batches[0])[1].item() for name, (_, forward) in models.items()}
        print(f"first-batch loss: ours {losses['ours']:.4f}, hf {losses['hf']:.4f}", file=sys.stderr)
    warm, timed = batches[:args.warmup], batches[args.warmup:]
    optimizers = {name: build_optimizer(model, TrainConfig(weight_decay=0.1)) for name, (model, _) in models.items()}
    for name, (model, forward) in models.items():
        time_steps(model, forward, optimizers[name], warm, args)
    if args.only:
        time_steps(*models[args.only], optimizers[args.only], timed, args)
        print(json.dumps({"peak_rss_mb": peak_rss_self_mb()}))
        return

    step_times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, (model, forward) in models.items():
            step_times[name] += time_steps(model, forward, optimizers[name], timed, args)
    tokens_per_step = args.batch_size * (batches[0][0].shape[1])
    tps = {name: tokens_per_step / statistics.median(times) for name, times in step_times.items()}
    rss = {} if args.no_rss else {name: peak_rss_mb(name, args) for name in models}

    import transformers

    print(f"\ntraining throughput on CPU ({torch.get_num_threads()} threads), preset {args.preset} "
          f"({sum(p.numel() for p in models['ours'][0].parameters()) / 1e6:.1f}M params), "
          f"batch {args.batch_size} x {batches[0][0].shape[1]} tokens, {args.dtype}, fused AdamW, "
          f"median of {args.rounds} x {args.steps} steps; torch {torch.__version__}, "
          f"transformers {transformers.__version__}\n")
    print("| model | step ms (median) | tokens/s | ratio vs HF | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("ours", "lightcoder Transformer"), ("hf", "HF LlamaForCausalLM (sdpa)")):
        ms = 1000 * statistics.median(step_times[name])
        print(f"| {label} | {ms:.0f} | {tps[name]:,.0f} | {tps[name] / tps['hf']:.2f} | "
              f"{rss.get(name, float('nan')):.0f} |")


if __name__ == "__main__":
    main()
