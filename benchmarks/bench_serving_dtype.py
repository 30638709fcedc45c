"""A released model stored in bf16, completing on this CPU: lightcoder's `--dtype auto` against the weights as
stored and against transformers' `from_pretrained` (whose default, `dtype="auto"`, also keeps bf16).

Most released code models are bf16 files. On a CPU without native bf16 instructions (AVX2) torch multiplies
bf16 matrices through a slow path, so reading the prompt, most of a completion's time, runs several times slower
than in fp32 (infer/weight_dtype.py). Every row decodes the same random lc-125m-shape weights greedily from
the same prompt ids; the table gives milliseconds and the ratio to transformers' default.

    .venv/bin/python benchmarks/bench_serving_dtype.py [--preset lc-125m] [--prompt-tokens 512] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from lightcoder.infer.completer import Completer
from lightcoder.infer.engine import generate, prefill
from lightcoder.infer.weight_dtype import describe_weights
from lightcoder.model.config import get_preset
from lightcoder.model.hf import save_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.train import train_tokenizer


def bf16_checkpoint(preset: str, out: Path) -> Path:
    """Random `preset` weights saved in bf16 with a small tokenizer (only ids are timed)."""
    train_tokenizer([inspect.getsource(textwrap)], TokenizerConfig(vocab_size=512)).save(out / "tokenizer")
    model = Transformer(get_preset(preset))
    model.init_weights(0)
    return save_checkpoint(model.to(torch.bfloat16), model.cfg, out / "ckpt", tokenizer_dir=out / "tokenizer")


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(ckpt: Path, dtype, prompt: list[int], new: int):
    """(first-token fn, whole-completion fn, what it loaded) for lightcoder's Completer with `dtype`."""
    completer = Completer.load(ckpt, dtype=dtype)
    model, ids = completer.model, torch.tensor([prompt])

    def first():
        with torch.inference_mode():
            prefill(model, ids, model.init_kv_cache(1, len(prompt) + new))

    def whole():
        assert len(list(generate(model, prompt, max_new_tokens=new, stop_ids=()))) == new
    return first, whole, describe_weights(completer)


def transformers_side(ckpt: Path, dtype, prompt: list[int], new: int):
    """The same for transformers' LlamaForCausalLM: `dtype` None = its default."""
    from transformers import AutoModelForCausalLM  # a dev dependency, only needed here

    hf = AutoModelForCausalLM.from_pretrained(ckpt, **({} if dtype is None else {"dtype": dtype})).eval()
    ids = torch.tensor([prompt])

    def first():
        with torch.inference_mode():
            hf(ids, use_cache=True, logits_to_keep=1)

    def whole():
        with torch.inference_mode():
            hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                        do_sample=False, eos_token_id=None, pad_token_id=0)
    return first, whole, f"{str(next(hf.parameters()).dtype).removeprefix('torch.')} weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="lc-125m")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    ckpt = bf16_checkpoint(args.preset, Path(tmp.name))
    prompt = torch.randint(3, 512, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    sides = {
        "transformers, from_pretrained default": lambda: transformers_side(ckpt, None, prompt, args.new_tokens),
        "transformers, dtype=float32": lambda: transformers_side(ckpt, torch.float32, prompt, args.new_tokens),
        "lightcoder, --dtype bfloat16 (as stored)": lambda: ours(ckpt, None, prompt, args.new_tokens),
        "lightcoder, --dtype auto (default)": lambda: ours(ckpt, "auto", prompt, args.new_tokens),
    }
    rows = {}
    for name, make in sides.items():  # one side in memory at a time
        first, whole, loaded = make()
        rows[name] = (loaded, timed(first, args.repeats) * 1e3, timed(whole, args.repeats) * 1e3)
        del first, whole
    print(f"\n{args.preset} weights stored in bf16, {torch.get_num_threads()} threads; prompt {args.prompt_tokens} "
          f"ids, {args.new_tokens} new, greedy; median of {args.repeats}")
    print("| engine | loaded as | first token ms | completion ms | speed vs transformers' default |")
    print("|---|---|---:|---:|---:|")
    ref = rows["transformers, from_pretrained default"][2]
    for name, (loaded, first_ms, whole_ms) in rows.items():
        print(f"| {name} | {loaded} | {first_ms:.0f} | {whole_ms:.0f} | {ref / whole_ms:.2f}x |")


if __name__ == "__main__":
    main()
