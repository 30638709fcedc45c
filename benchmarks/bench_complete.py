"""Completion latency on CPU: our Completer vs transformers' LlamaForCausalLM.generate, same weights.

Both decode greedily, one ~512-token SPM prompt, exactly 64 new tokens (no early stop), fp32 on CPU.
Our prefix cache is cleared before every call, so this measures a cold request (bench_serve.py
measures the editor case, where consecutive requests share their prompt prefix).
Without --ckpt the model is the lc-quickstart shape with random weights and a tokenizer trained on
the stdlib; the checkpoint is saved once and loaded by both sides. Also checks that both produce the
same greedy tokens.

    .venv/bin/python benchmarks/bench_complete.py [--ckpt RUN_OR_CKPT] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from lightcoder.infer.completer import Completer
from lightcoder.infer.engine import generate, prefill
from lightcoder.infer.prompts import build_prompt
from lightcoder.model.config import get_preset
from lightcoder.model.hf import resolve_checkpoint, save_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.train import train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def random_checkpoint(preset: str, out: Path) -> Path:
    cfg = get_preset(preset)
    texts = [p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))[:150]]
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=cfg.vocab_size))
    tokenizer.save(out / "tokenizer")
    model = Transformer(cfg)
    model.init_weights(0)
    return save_checkpoint(model, cfg, out / "ckpt" / "step_000000", tokenizer_dir=out / "tokenizer")


def timed(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, after one warm-up each; the fns alternate so load drifts hit all alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="run dir, ckpt dir or checkpoint; default: random lc-quickstart weights")
    ap.add_argument("--preset", default="lc-quickstart")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM  # a dev dependency, only needed here

    tmp = tempfile.TemporaryDirectory()
    ckpt = resolve_checkpoint(args.ckpt) if args.ckpt else random_checkpoint(args.preset, Path(tmp.name))
    ours = Completer.load(ckpt, dtype=torch.float32)
    hf = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()

    # A FIM prompt from a real file: cursor in the middle, the budget cuts both sides.
    code = (STDLIB / "textwrap.py").read_text(encoding="utf-8")
    cut = code.index("def fill(")
    prefix, suffix = code[:cut], code[cut:]
    new, n_prompt = args.new_tokens, args.prompt_tokens
    cfg = ours.prompt_config("spm", new, n_prompt)
    prompt = build_prompt(ours.tokenizer, prefix=prefix, suffix=suffix, path="textwrap.py", cfg=cfg)
    input_ids = torch.tensor([prompt])
    attention_mask = torch.ones_like(input_ids)

    def run_ours():
        ours.engine.cache.clear()  # a cold request: no prefix-KV reuse or greedy replay between repeats
        c = ours.complete(prefix, suffix, path="textwrap.py", max_new_tokens=new, stop_ids=(),
                          max_prompt_tokens=n_prompt)
        assert c.new_tokens == new and c.prompt_tokens == len(prompt)

    def run_hf():
        with torch.inference_mode():
            return hf.generate(input_ids, attention_mask=attention_mask, max_new_tokens=new, min_new_tokens=new,
                               do_sample=False, eos_token_id=None, pad_token_id=0)

    def prefill_ours():
        with torch.inference_mode():
            prefill(ours.model, input_ids, ours.model.init_kv_cache(1, len(prompt) + new))

    def prefill_hf():
        with torch.inference_mode():
            hf(input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)

    ours_ids = list(generate(ours.model, prompt, max_new_tokens=new, stop_ids=()))
    hf_ids = run_hf()[0, len(prompt):].tolist()
    same = sum(a == b for a, b in zip(ours_ids, hf_ids))

    names = ("lightcoder Completer", "HF generate")
    totals = timed(dict(zip(names, (run_ours, run_hf))), args.repeats)
    firsts = timed(dict(zip(names, (prefill_ours, prefill_hf))), args.repeats)
    prompt_ms = statistics.median(timed({"p": lambda: build_prompt(ours.tokenizer, prefix=prefix, suffix=suffix,
                                                                   path="textwrap.py", cfg=cfg)}, args.repeats)["p"])
    rows = {}
    for name, overhead in zip(names, (prompt_ms * 1e3, 0.0)):  # decode = total - prompt building - prefill
        total, first = statistics.median(totals[name]) * 1e3, statistics.median(firsts[name]) * 1e3
        rows[name] = (total, total / new, first, (total - overhead - first) / (new - 1))

    print(f"\nmodel {ckpt}  ({sum(p.numel() for p in ours.model.parameters()) / 1e6:.1f}M params, fp32, "
          f"{torch.get_num_threads()} threads)  prompt {len(prompt)} tokens, {new} new tokens, greedy, "
          f"median of {args.repeats}")
    print("| engine | ms / completion | ms / token | prefill ms | decode ms / token | ratio (ours / HF) |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = rows["HF generate"][0]
    for name, (total, per_token, first, decode) in rows.items():
        print(f"| {name} | {total:.1f} | {per_token:.2f} | {first:.1f} | {decode:.2f} | {total / ref:.2f} |")
    print(f"(ours includes building and tokenizing the prompt from text: {prompt_ms * 1e3:.1f} ms; HF gets ids)")
    print(f"greedy tokens identical: {ours_ids == hf_ids} ({same}/{new} positions agree)")


if __name__ == "__main__":
    main()
