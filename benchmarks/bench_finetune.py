"""LoRA fine-tuning throughput: `lightcoder finetune --method lora`'s step vs transformers + peft.

The peer is the stack of aiXcoder's own `finetune.py` (and of most LoRA recipes): `LlamaForCausalLM` (SDPA
attention) wrapped by `peft.get_peft_model` with the same LoRA settings (r, alpha, dropout and the seven
projections: lightcoder.finetune.config.LoraSettings' defaults), trained by a plain loop, which is what
transformers' Trainer runs per step: autocast forward, fp32 cross-entropy over (B, T, V) logits, backward,
grad clip, `torch.optim.AdamW` over the adapter. Ours is `lightcoder.finetune.lora_loop.lora_step`: peft on
lightcoder's Transformer, the fused head + loss, our attention kernel, our AdamW. Both start from the same
base weights (ours, renamed) and the same adapter weights (ours, copied through the peft-format key map the
adapter files use), so the first batch's loss is printed for both (dropout off) and must agree.

Rounds alternate between the two; the table gives the median step, tokens/s, the ratio to the peer, the
trainable parameter count and each one's peak memory (a fresh process per model: RSS on CPU, allocated
memory on CUDA).

    .venv/bin/python benchmarks/bench_finetune.py                                  # lc-quickstart, batch 4 x 512
    .venv/bin/python benchmarks/bench_finetune.py --preset lc-125m --steps 3 --rounds 2
    .venv/bin/python benchmarks/bench_finetune.py --device cuda --preset lc-1b --seq-len 1025 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import (  # noqa: E402  (a sibling script)
    add_shape_args, child_peak_mb, make_batches, peak_rss_self_mb, time_steps,
)

from lightcoder.train.precision import resolve_dtype  # noqa: E402

MODELS = ("ours", "peft")
LABELS = {"ours": "lightcoder lora_step (peft on lightcoder's Transformer)",
          "peft": "HF LlamaForCausalLM (sdpa) + peft + AdamW"}


def build_models(args) -> tuple[object, dict]:
    """(model config, {name: peft-wrapped model}) with equal base and adapter weights."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from lightcoder.finetune.config import LoraSettings
    from lightcoder.finetune.lora import add_lora, peft_config, to_hf_key
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import hf_config, to_hf_name
    from lightcoder.model.llama import Transformer

    cfg = get_preset(args.preset, max_seq_len=max(args.seq_len, get_preset(args.preset).max_seq_len))
    settings = LoraSettings(r=args.rank)
    device = torch.device(args.device)
    base = Transformer(cfg)
    base.init_weights(seed=0)
    base_state = base.state_dict()
    ours = Transformer(cfg)
    ours.load_state_dict(base_state)
    ours.init_rope()
    ours.attention_impl = "auto"
    ours = add_lora(ours.to(device), settings)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # B = 0 at init: give it values, so that the parity check below means something
        for name, p in ours.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    models = {"ours": ours}
    if "peft" in args.which:
        import transformers

        hf_dict = {k: v for k, v in hf_config(cfg, torch.float32).items() if k not in ("architectures", "model_type")}
        hf_cfg = transformers.LlamaConfig(**hf_dict)
        hf_cfg._attn_implementation = "sdpa"
        hf = transformers.LlamaForCausalLM(hf_cfg)
        hf.load_state_dict({to_hf_name(k): v for k, v in base_state.items()}, strict=True)
        hf = get_peft_model(hf.to(device), peft_config(settings, hf_names=True))
        adapter = {to_hf_key(k): v for k, v in get_peft_model_state_dict(ours).items()}
        result = set_peft_model_state_dict(hf, adapter)
        if getattr(result, "unexpected_keys", None):
            raise RuntimeError(f"adapter keys the peft model lacks: {result.unexpected_keys[:3]}")
        models["peft"] = hf
    return cfg, {name: m for name, m in models.items() if name in args.which}


def make_step(name: str, model, autocast):
    """step(inputs, targets) -> loss for one model: ours through lora_step, the peer as Trainer's inner loop."""
    from lightcoder.finetune.lora_loop import lora_step
    from lightcoder.train.config import TrainConfig
    from lightcoder.train.optim import build_optimizer

    model.train()
    if name == "ours":
        optimizer = build_optimizer(model, TrainConfig())  # what `lightcoder finetune` builds (fused AdamW)
        return lambda x, y: lora_step(model, optimizer, x, y, autocast=autocast, grad_clip=1.0, grad_accum=1,
                                      doc_start=None)[0]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                                  betas=(0.9, 0.95), weight_decay=0.1)

    def step(inputs, targets):
        with autocast:
            logits = model(input_ids=inputs, use_cache=False).logits  # (B, T, V)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()
    return step


@torch.no_grad()
def first_losses(models: dict, batch, autocast) -> dict[str, float]:
    x, y = batch
    out = {}
    for name, model in models.items():
        model.eval()  # dropout off: the two must agree
        with autocast:
            if name == "ours":
                out[name] = model(x, y)[1].item()
            else:
                out[name] = F.cross_entropy(model(input_ids=x).logits.float().flatten(0, 1), y.reshape(-1)).item()
    return out


def peak_memory_mb(which: str, args) -> float:
    """Peak RSS (CPU) or CUDA memory of a fresh process that runs warm-up + 2 steps of one model."""
    cmd = [sys.executable, __file__, "--only", which, "--preset", args.preset, "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--device", args.device, "--threads", str(args.threads),
           "--rank", str(args.rank), "--steps", "2", "--warmup", "1", "--rounds", "1", "--dtype", args.dtype]
    return child_peak_mb(cmd)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_shape_args(p)
    p.add_argument("--rank", type=int, default=8, help="LoRA r (aiXcoder's finetune.py: 8)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per model per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, peft, ours, ...)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto",
                   help="autocast dtype; auto: what `lightcoder finetune` picks on this machine (train/precision.py)")
    p.add_argument("--no-rss", action="store_true", help="skip the per-model peak memory subprocesses")
    p.add_argument("--only", choices=MODELS, help=argparse.SUPPRESS)  # peak-memory child process
    args = p.parse_args()
    args.dtype = resolve_dtype(args.dtype, torch.device(args.device))  # the child processes get the resolved one
    args.which = (args.only,) if args.only else MODELS
    args.shards, args.middles_only = "", False  # make_batches' random windows (bench_train's --shards is not offered)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg, models = build_models(args)
    batches = make_batches(args, cfg.vocab_size)
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    if not args.only:
        losses = first_losses(models, batches[0], autocast)
        print("first-batch loss (dropout off): " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()), file=sys.stderr)
    steps = {name: make_step(name, model, autocast) for name, model in models.items()}
    warm, timed = batches[:args.warmup], batches[args.warmup:]
    for step in steps.values():
        time_steps(step, warm, args.device)
    if args.only:
        time_steps(steps[args.only], timed, args.device)
        peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else peak_rss_self_mb()
        print(json.dumps({"peak_mb": peak}))
        return
    step_times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            step_times[name] += time_steps(step, timed, args.device)
    memory = {} if args.no_rss else {name: peak_memory_mb(name, args) for name in steps}
    print_table(args, cfg, models, step_times, memory, tokens_per_step=args.batch_size * batches[0][0].shape[1])


def print_table(args, cfg, models: dict, step_times: dict, memory: dict, *, tokens_per_step: int) -> None:
    import peft
    import transformers

    from lightcoder.finetune.lora import trainable_parameters

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    trainable, total = trainable_parameters(models["ours"])
    print(f"\nLoRA r {args.rank} fine-tuning on {where}, preset {args.preset} ({total / 1e6:.1f}M params, "
          f"{trainable:,} trainable), batch {args.batch_size} x {tokens_per_step // args.batch_size} tokens, "
          f"{'bf16 autocast' if args.dtype == 'bf16' else 'fp32'}, median of {args.rounds} x {args.steps} steps; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, peft {peft.__version__}\n")
    print("| step | median ms | tokens/s | vs peer | trainable params | peak memory MB |")
    print("|---|---:|---:|---:|---:|---:|")
    peer = statistics.median(step_times["peft"])
    for name, times in step_times.items():
        median = statistics.median(times)
        n_trainable = trainable_parameters(models[name])[0]
        mem = f"{memory[name]:,.0f}" if name in memory else "-"
        print(f"| {LABELS[name]} | {1000 * median:,.0f} | {tokens_per_step / median:,.0f} | {peer / median:.2f} | "
              f"{n_trainable:,} | {mem} |")


if __name__ == "__main__":
    main()
