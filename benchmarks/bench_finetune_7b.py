"""One LoRA step on the exact aiXcoder-7B shape (random bf16 weights, a SentencePiece tokenizer in its
layout): trainable parameters, step time and peak memory. CPU needs ~16 GB of RAM; not a test.

    .venv/bin/python benchmarks/bench_finetune_7b.py [--tokens 64] [--method lora|qlora] [--device cpu|cuda]

The model is built on the meta device and materialized once in bf16 (7.43B parameters, 14.9 GB), the
LoRA layers (r=8 on q/k/v/o/gate/up/down, aiXcoder's finetune.py targets) are added with peft, and one
training example of --tokens tokens, cut by lightcoder's context-level FIM builder in aiXcoder's
SentencePiece layout, goes through forward, backward and an AdamW step of the adapter. On a GPU,
--method qlora quantizes the base to 4-bit NF4 first (bitsandbytes) as finetune.py does.
"""

from __future__ import annotations

import argparse
import inspect
import resource
import tempfile
import time
import zipfile

import torch

from lightcoder.finetune.aixcoder_layout import make_aixcoder_tokenizer
from lightcoder.finetune.config import LoraSettings
from lightcoder.finetune.lora import add_lora, quantize_4bit, trainable_parameters
from lightcoder.finetune.lora_loop import lora_step
from lightcoder.fim.context import build_example
from lightcoder.fim.spans import Span
from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.backends import SentencePieceTokenizer
from lightcoder.train.config import TrainConfig
from lightcoder.train.optim import build_optimizer


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


@torch.no_grad()
def random_bf16_model(device: torch.device) -> Transformer:
    with torch.device("meta"):
        model = Transformer(get_preset("aixcoder-7b", max_seq_len=4096)).to(torch.bfloat16)
    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.02, generator=gen)
    model.init_rope()
    return model


def example_ids(tokens: int) -> list[int]:
    """One SPM training example of `tokens` + 1 ids in aiXcoder's SentencePiece layout (eos-padded)."""
    with tempfile.TemporaryDirectory() as d:
        path = make_aixcoder_tokenizer([inspect.getsource(zipfile)], d, vocab_size=2000)
        tok = SentencePieceTokenizer(path)
    assert tok.token_to_id("<AIX-SPAN-PRE>") == 260, "the layout puts ▁<AIX-SPAN-PRE> at 260"
    text = inspect.getsource(zipfile.ZipInfo)
    start = text.index("self.filename")
    ex = build_example(tok, text, "zipfile/__init__.py", Span(start, start + 24, "line"), seq_len=tokens + 1,
                       mode="spm", max_middle_tokens=tokens // 2)
    ids = ex.ids + [tok.eos_id] * (tokens + 1 - len(ex.ids))
    return ids[: tokens + 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--method", choices=("lora", "qlora"), default="lora")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    ids = torch.tensor([example_ids(args.tokens)], device=device)
    t0 = time.perf_counter()
    model = random_bf16_model(torch.device("cpu") if args.method == "qlora" else device)
    if args.method == "qlora":
        model = quantize_4bit(model, device)
    print(f"built aiXcoder-7B shape ({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B stored elements, "
          f"{args.method}) in {time.perf_counter() - t0:.0f} s; peak RSS {peak_rss_gb():.1f} GiB")
    peft_model = add_lora(model, LoraSettings(dropout=0.0))
    trainable, total = trainable_parameters(peft_model)
    print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f} %)")
    optimizer = build_optimizer(peft_model, TrainConfig(lr=2e-4, min_lr=2e-5, weight_decay=0.0))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(2 if device.type == "cuda" else 1):  # the GPU's first step includes kernel setup
        t0 = time.perf_counter()
        loss, _ = lora_step(peft_model, optimizer, ids[:, :-1], ids[:, 1:], autocast=autocast, grad_clip=1.0,
                            grad_accum=1, doc_start=1)
        loss = float(loss)
        seconds = time.perf_counter() - t0
        print(f"step {step}: {args.tokens} tokens, loss {loss:.3f}, {seconds:.2f} s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"peak RSS: {peak_rss_gb():.1f} GiB")


if __name__ == "__main__":
    main()
