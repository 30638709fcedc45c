"""Training throughput: lightcoder's training step vs transformers' LlamaForCausalLM + a plain AdamW loop.

The peer is what a user would write instead: `LlamaForCausalLM` (SDPA attention) with the same shape (our
ModelConfig -> LlamaConfig through lightcoder.model.hf.hf_config), the same initial weights (ours, renamed),
the same batches, dtype (fp32 weights; bf16 autocast where `lightcoder train` would use it: `--dtype auto`),
batch and threads, and a plain loop: autocast forward + fp32 cross-entropy, backward, grad clip,
`torch.optim.AdamW` with its defaults (foreach).
Ours is `lightcoder.train.loop.optimizer_step` with our optimizer (fused AdamW, no decay on norms and
embeddings), eager, and with `--compile` also the whole model torch.compile'd (compile time not counted).
Attention is plain causal in all rows (document masking off). Our attention kernel is what `lightcoder
train` picks (`--attention auto`: on CPU the block-causal matmul kernel of lightcoder.model.cpu_attention;
`--sdpa-row` adds our step on the same SDPA kernel as HF, to show what each part gains). The first
batch's loss is printed for all models before timing (equal to rounding).

Memory allocation is part of each step's cost: HF materializes (B, T, V) fp32 logits and their
log-softmax, and glibc serves allocations over 32 MB with fresh mmap'd pages that are faulted in again on
every step. `--malloc keep` makes the whole process (both models alike) keep freed memory instead
(mallopt: no mmap, no trimming), which shows how much of the gap is the allocator rather than compute.

Rounds alternate between the models so that load from other processes hits all alike; the table reports
the median and the fastest step time over all timed steps, tokens/s, the ratios to HF (of medians and of
fastest steps: on a loaded machine the fastest step is the least disturbed one), and MFU: model FLOPs per token
(lightcoder.train.telemetry.flops_per_token, PaLM's formula) x tokens/s over the matmul peak measured on
this machine in the same dtype (repeated 1024^2 / 8192^2 matmuls on CPU / GPU) and thread count.

    .venv/bin/python benchmarks/bench_train.py                       # lc-quickstart, seq 512, batch 4, auto dtype
    .venv/bin/python benchmarks/bench_train.py --compile             # + a torch.compile'd row
    .venv/bin/python benchmarks/bench_train.py --sdpa-row --malloc keep  # + ours on SDPA; no page-fault churn
    .venv/bin/python benchmarks/bench_train.py --dtype fp32 --steps 5 --rounds 2
    .venv/bin/python benchmarks/bench_train.py --shards run/quickstart/shards --middles-only  # real windows, real targets
    .venv/bin/python benchmarks/bench_train.py --device cuda --preset lc-125m --seq-len 4097 --batch-size 8
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

from lightcoder.train.precision import resolve_dtype

MODELS = ("ours", "ours-sdpa", "ours-compiled", "hf")
LABELS = {"ours": "lightcoder optimizer_step (eager)", "ours-sdpa": "lightcoder optimizer_step (eager, SDPA attention)",
          "ours-compiled": "lightcoder optimizer_step (compiled)", "hf": "HF LlamaForCausalLM (sdpa) + AdamW"}


def keep_freed_memory() -> None:
    """glibc: serve every allocation from the heap (M_MMAP_MAX 0) and never return it (M_TRIM_THRESHOLD
    huge), so a step's temporaries reuse pages that are already mapped instead of faulting in new ones."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        raise RuntimeError("mallopt failed: --malloc keep needs glibc")


def build_steps(args, which: tuple[str, ...]):
    """(model config, {name: (module, step(inputs, targets) -> loss)}); all start from our init_weights(0)."""
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import hf_config, to_hf_name
    from lightcoder.model.llama import Transformer
    from lightcoder.train.config import TrainConfig
    from lightcoder.train.loop import optimizer_step
    from lightcoder.train.optim import build_optimizer

    device = torch.device(args.device)
    cfg = get_preset(args.preset, max_seq_len=max(args.seq_len, get_preset(args.preset).max_seq_len))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    reference = Transformer(cfg)
    reference.init_weights(seed=0)
    steps = {}
    for name in which:
        if name.startswith("ours"):
            model = Transformer(cfg).to(device)
            model.load_state_dict(reference.state_dict())
            model.init_rope()
            model.train()
            model.attention_impl = "sdpa" if name == "ours-sdpa" else args.attention
            if name == "ours-compiled":
                model.compile(dynamic=False)  # what train.compile does in one process
            optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1))

            def step(inputs, targets, model=model, optimizer=optimizer):
                return optimizer_step(model, optimizer, inputs, targets, autocast=autocast, grad_clip=1.0)[0]
        else:
            import transformers

            hf_dict = {k: v for k, v in hf_config(cfg, torch.float32).items() if k not in ("architectures", "model_type")}
            hf_cfg = transformers.LlamaConfig(**hf_dict)
            hf_cfg._attn_implementation = "sdpa"
            model = transformers.LlamaForCausalLM(hf_cfg)
            model.load_state_dict({to_hf_name(k): v for k, v in reference.state_dict().items()}, strict=True)
            model.to(device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

            def step(inputs, targets, model=model, optimizer=optimizer):  # the plain loop a user writes
                with autocast:
                    logits = model(input_ids=inputs, use_cache=False).logits  # (B, T, V)
                    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                return loss.detach()
        steps[name] = (model, step)
    return cfg, steps


def make_batches(args, vocab_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from lightcoder.train.loader import WindowLoader

    n = args.warmup + args.steps
    if args.shards:
        from lightcoder.shards import open_shard

        windows = open_shard(args.shards, "train")
        if windows.shape[1] != args.seq_len:
            print(f"note: using the shards' seq_len {windows.shape[1]}", file=sys.stderr)
        if args.middles_only:  # the targets `lightcoder train` uses: -100 on FIM prompts (train.fim_prompt_loss false)
            from lightcoder.shards import open_mask
            from lightcoder.windows import TARGET

            loader = WindowLoader(windows, args.batch_size, seed=0, device=args.device,
                                  masks=open_mask(args.shards, "train"), loss_from=TARGET)
            return [loader.next_batch() for _ in range(n)]
    else:
        rng = np.random.default_rng(0)
        windows = rng.integers(0, vocab_size, (max(n * args.batch_size, args.batch_size), args.seq_len),
                               dtype=np.int64).astype(np.uint32)
    loader = WindowLoader(windows, args.batch_size, seed=0, device=args.device)
    return [loader.next_batch() for _ in range(n)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step, batches, device: str, clock=time.perf_counter) -> list[float]:
    times = []
    for inputs, targets in batches:
        sync(device)
        t0 = clock()
        step(inputs, targets)
        sync(device)
        times.append(clock() - t0)
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


def peak_memory_mb(which: str, args) -> float:
    """Peak RSS (CPU) or peak CUDA memory of a fresh process that runs warmup + 2 steps of one model."""
    cmd = [sys.executable, __file__, "--only", which, "--preset", args.preset, "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--threads", str(args.threads),
           "--device", args.device, "--steps", "2", "--warmup", "1", "--rounds", "1",
           "--attention", args.attention, "--malloc", args.malloc]
    if args.shards:
        cmd += ["--shards", args.shards] + (["--middles-only"] if args.middles_only else [])
    return child_peak_mb(cmd)


def child_peak_mb(cmd: list[str]) -> float:
    """Run a peak-memory child process (one model, `--only`) and read the peak it prints last as JSON."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def add_shape_args(p: argparse.ArgumentParser) -> None:
    """The model and batch shape options this script shares with bench_finetune.py."""
    p.add_argument("--preset", default="lc-quickstart")
    p.add_argument("--seq-len", type=int, default=512, help="window length; the model sees seq_len - 1 tokens")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu or cuda")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_shape_args(p)
    p.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto",
                   help="autocast dtype; auto: what `lightcoder train` picks on this machine (train/precision.py)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per model per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model before the first round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, hf, ours, hf, ...)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU seconds (robust on a shared machine; use with --threads 1)")
    p.add_argument("--compile", action="store_true", help="add a row for our model under torch.compile")
    p.add_argument("--attention", default="auto", choices=("auto", "sdpa", "blocks"),
                   help="our attention kernel (train.attention); auto = what lightcoder train uses")
    p.add_argument("--sdpa-row", action="store_true", help="add a row for our eager step on SDPA attention")
    p.add_argument("--malloc", choices=("default", "keep"), default="default",
                   help="keep: this process keeps freed memory (mallopt), for both models")
    p.add_argument("--no-hf", action="store_true", help="only our rows (e.g. a 1B model where both do not fit)")
    p.add_argument("--shards", default="", help="a packed shards dir to take the train windows from")
    p.add_argument("--middles-only", action="store_true",
                   help="with --shards: no loss on FIM prompts, as lightcoder train (both models get the same targets)")
    p.add_argument("--no-rss", action="store_true", help="skip the per-model peak memory subprocesses")
    p.add_argument("--only", choices=MODELS, help=argparse.SUPPRESS)  # peak-memory child process
    args = p.parse_args()
    args.dtype = resolve_dtype(args.dtype, torch.device(args.device))  # the child processes get the resolved one
    if args.middles_only and not args.shards:
        p.error("--middles-only needs --shards DIR (a packed run's shards, e.g. run/quickstart/shards)")

    from lightcoder.train.telemetry import flops_per_token, measure_matmul_peak

    if args.malloc == "keep":
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    which = (args.only,) if args.only else tuple(
        m for m in MODELS if (m != "ours-compiled" or args.compile) and (m != "hf" or not args.no_hf)
        and (m != "ours-sdpa" or args.sdpa_row))
    cfg, steps = build_steps(args, which)
    batches = make_batches(args, cfg.vocab_size)
    if not args.only and len(steps) > 1:  # same weights, same batch: the losses must agree before timing
        autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16")
        with torch.no_grad(), autocast:
            x, y = batches[0]
            first = {name: (model(x, y)[1] if name.startswith("ours") else F.cross_entropy(
                model(input_ids=x).logits.float().flatten(0, 1), y.reshape(-1))).item()
                for name, (model, _) in steps.items()}
        print("first-batch loss: " + ", ".join(f"{k} {v:.4f}" for k, v in first.items()), file=sys.stderr)
    warm, timed = batches[:args.warmup], batches[args.warmup:]
    for name, (_, step) in steps.items():
        t0 = time.perf_counter()
        time_steps(step, warm, args.device)
        print(f"warm-up {name}: {time.perf_counter() - t0:.1f}s (compilation included)", file=sys.stderr)
    if args.only:
        time_steps(steps[args.only][1], timed, args.device)
        peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else peak_rss_self_mb()
        print(json.dumps({"peak_mb": peak}))
        return

    step_times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (_, step) in steps.items():
            step_times[name] += time_steps(step, timed, args.device,
                                           time.process_time if args.clock == "cpu" else time.perf_counter)
    seq = batches[0][0].shape[1]
    tokens_per_step = args.batch_size * seq
    tps = {name: tokens_per_step / statistics.median(times) for name, times in step_times.items()}
    peak = measure_matmul_peak(torch.device(args.device), torch.bfloat16 if args.dtype == "bf16" else torch.float32,
                               seconds=1.0, clock=time.process_time if args.clock == "cpu" else time.perf_counter)
    flops = flops_per_token(cfg, seq)
    memory = {} if args.no_rss else {name: peak_memory_mb(name, args) for name in steps}

    import transformers

    where = (torch.cuda.get_device_name() if args.device.startswith("cuda")
             else f"CPU ({torch.get_num_threads()} threads)")
    print(f"\ntraining throughput on {where}, preset {args.preset} "
          f"({sum(p.numel() for p in steps[next(iter(steps))][0].parameters()) / 1e6:.1f}M params), "
          f"batch {args.batch_size} x {seq} tokens, {args.dtype}, median of {args.rounds} x {args.steps} steps "
          f"({args.clock} clock); our attention {args.attention}; malloc {args.malloc}; "
          f"measured {args.dtype} matmul peak {peak / 1e12:.2f} TFLOP/s; {flops / 1e6:.1f} MFLOP/token; "
          f"torch {torch.__version__}, transformers {transformers.__version__}\n")
    mem_label = "peak CUDA MB" if args.device.startswith("cuda") else "peak RSS MB"
    # The fastest step is the one least disturbed by other processes: on a shared machine with every core
    # busy, 2 threads that wait on each other at each kernel can make the median several times the best.
    best = {name: min(times) for name, times in step_times.items()}
    print(f"| model | step ms (median) | step ms (best) | tokens/s | ratio vs HF | ratio vs HF (best steps) "
          f"| MFU | {mem_label} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in steps:
        ms = 1000 * statistics.median(step_times[name])
        ratio = f"{tps[name] / tps['hf']:.2f}" if "hf" in tps else "-"
        best_ratio = f"{best['hf'] / best[name]:.2f}" if "hf" in best else "-"
        print(f"| {LABELS[name]} | {ms:.0f} | {1000 * best[name]:.0f} | {tps[name]:,.0f} | {ratio} | {best_ratio} | "
              f"{100 * tps[name] * flops / peak:.1f}% | {memory.get(name, float('nan')):.0f} |")


if __name__ == "__main__":
    main()
