"""Training attention on CPU: lightcoder's block-causal matmul kernel vs F.scaled_dot_product_attention.

Both compute forward + backward of causal grouped-query attention on the same bf16 inputs (q (B, H, T, Hd),
k/v (B, K, T, Hd), given as transposed (B, T, H, Hd) views as the model passes them), optionally with a
block-causal document mask (`--documents N`: N documents per window on average). Rounds alternate
between the two; the table prints the median of all timed repetitions and the ratio SDPA / ours, plus the
max error of each against an fp32 SDPA reference (relative to the reference's largest value).

    .venv/bin/python benchmarks/bench_attention.py                         # T = 255, 511, 1023, 2047
    .venv/bin/python benchmarks/bench_attention.py --threads 1 --clock cpu --seq-lens 511,4095
    .venv/bin/python benchmarks/bench_attention.py --documents 4           # with a document mask
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lightcoder.model.cpu_attention import block_causal_attention
from lightcoder.model.llama import block_causal_mask


def make_inputs(args, T: int, gen: torch.Generator):
    B, H, K, Hd = args.batch_size, args.heads, args.kv_heads, args.head_dim
    q = torch.randn(B, T, H, Hd, generator=gen).to(torch.bfloat16).transpose(1, 2).requires_grad_()
    k = torch.randn(B, T, K, Hd, generator=gen).to(torch.bfloat16).transpose(1, 2).requires_grad_()
    v = torch.randn(B, T, K, Hd, generator=gen).to(torch.bfloat16).transpose(1, 2).requires_grad_()
    grad = torch.randn(B, H, T, Hd, generator=gen).to(torch.bfloat16)
    keep = None
    if args.documents > 1:  # document starts drawn uniformly: ~`documents` per window
        starts = torch.rand(B, T, generator=gen) < (args.documents - 1) / T
        keep = block_causal_mask(torch.cumsum(starts, dim=-1))  # (B, 1, T, T)
    return q, k, v, grad, keep


def kernels(keep):
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(  # noqa: E731
        q, k, v, attn_mask=keep, is_causal=keep is None, enable_gqa=True)
    ours = lambda q, k, v: block_causal_attention(q, k, v, keep)  # noqa: E731
    return {"sdpa": sdpa, "ours": ours}


def max_errors(fns, q, k, v, grad, keep):
    """Max |x - ref| / max |ref| of output and q/k/v grads of each kernel vs fp32 SDPA."""
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=keep, is_causal=keep is None, enable_gqa=True)
    ref_grads = torch.autograd.grad(ref, (q32, k32, v32), grad.float())
    errors = {}
    for name, fn in fns.items():
        out = fn(q, k, v)
        grads = torch.autograd.grad(out, (q, k, v), grad)
        errors[name] = max(((a.float() - b).abs().max() / b.abs().max()).item()
                           for a, b in zip((out, *grads), (ref, *ref_grads)))
    return errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq-lens", default="255,511,1023,2047")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--documents", type=int, default=1, help=">1: a block-causal mask with ~N documents per window")
    p.add_argument("--reps", type=int, default=5, help="timed fwd+bwd per kernel per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    gen = torch.Generator().manual_seed(0)
    print(f"attention fwd+bwd on CPU ({torch.get_num_threads()} threads, {args.clock} clock), bf16, "
          f"B={args.batch_size} H={args.heads} K={args.kv_heads} Hd={args.head_dim}, "
          f"{'causal' if args.documents <= 1 else f'~{args.documents} documents per window'}; "
          f"torch {torch.__version__}\n")
    print("| T | SDPA ms | ours ms | speedup | max rel. error SDPA / ours (vs fp32) |")
    print("|---:|---:|---:|---:|---|")
    for T in (int(t) for t in args.seq_lens.split(",")):
        q, k, v, grad, keep = make_inputs(args, T, gen)
        fns = kernels(keep)
        errors = max_errors(fns, q, k, v, grad, keep)
        times = {name: [] for name in fns}
        for name, fn in fns.items():  # warm-up
            fn(q, k, v).backward(grad)
        for _ in range(args.rounds):
            for name, fn in fns.items():
                for _ in range(args.reps):
                    t0 = clock()
                    fn(q, k, v).backward(grad)
                    times[name].append(clock() - t0)
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        print(f"| {T} | {ms['sdpa']:.1f} | {ms['ours']:.1f} | {ms['sdpa'] / ms['ours']:.2f} | "
              f"{errors['sdpa']:.1e} / {errors['ours']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
