"""Text in, completion out: prompt building, generation and decoding around one loaded model.

Example:
    completer = Completer.load("runs/quick")        # run dir, ckpt dir or one checkpoint
    completer.complete("def add(a, b):\\n    return ", "\\n", path="m.py").text  # -> "a + b"
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from lightcoder.infer.engine import generate
from lightcoder.infer.prompts import PromptConfig, build_prompt
from lightcoder.model.config import ModelConfig
from lightcoder.model.hf import CheckpointError, load_checkpoint, resolve_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.tokenizer import Tokenizer


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    new_tokens: int  # generated tokens, the stop token not counted
    stop_reason: str  # "stop" (a stop token), "length" (max_new_tokens), "max_seq_len" (context full)
    seconds: float  # wall time of the whole call: prompt, generation, decoding


class Completer:
    """A model, its tokenizer and the prompt rules; `complete` is the whole inference path."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, model_cfg: ModelConfig, *,
                 max_prompt_tokens: int | None = None, include_path: bool = True):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self.max_prompt_tokens = max_prompt_tokens  # None: whatever max_seq_len leaves after the new tokens
        self.include_path = include_path

    @classmethod
    def load(cls, run_or_ckpt: str | Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, **kwargs) -> Completer:
        """From a checkpoint dir, a ckpt dir or a run dir (its newest complete checkpoint).

        The tokenizer comes from the checkpoint dir (save_checkpoint copies it there), else from
        RUN/tokenizer. dtype None keeps the stored dtype (fp32 for our checkpoints).
        """
        ckpt = resolve_checkpoint(run_or_ckpt)
        model, cfg = load_checkpoint(ckpt, device=device, dtype=dtype)
        candidates = [ckpt, Path(run_or_ckpt) / "tokenizer", ckpt.parent.parent / "tokenizer"]
        tok_dir = next((d for d in candidates if (d / "tokenizer.json").is_file()), None)
        if tok_dir is None:
            raise CheckpointError(f"no tokenizer.json in {ckpt} or its run's tokenizer/ dir; "
                                  "save checkpoints with tokenizer_dir=... or pass a run dir")
        tokenizer = Tokenizer.load(tok_dir)
        if tokenizer.vocab_size > cfg.vocab_size:
            raise CheckpointError(f"tokenizer in {tok_dir} has {tokenizer.vocab_size} tokens but the model in "
                                  f"{ckpt} only {cfg.vocab_size}; they do not belong together")
        return cls(model, tokenizer, cfg, **kwargs)

    def prompt_config(self, mode: str, max_new_tokens: int, max_prompt_tokens: int | None = None) -> PromptConfig:
        room = self.model_cfg.max_seq_len - max_new_tokens
        if room <= 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in "
                             f"max_seq_len={self.model_cfg.max_seq_len}; lower it")
        budget = min(max_prompt_tokens or self.max_prompt_tokens or room, room)
        return PromptConfig(mode=mode, max_prompt_tokens=budget, include_path=self.include_path)

    def complete(self, prefix: str, suffix: str = "", *, path: str = "", max_new_tokens: int = 64,
                 mode: str = "spm", temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int = 0, stop_ids: Collection[int] | None = None,
                 max_prompt_tokens: int | None = None) -> Completion:
        """Complete the code between prefix and suffix (NTP when suffix is ""); greedy by default.

        stop_ids None = the tokenizer's stop set; pass () to always generate max_new_tokens.
        """
        start = time.perf_counter()
        cfg = self.prompt_config(mode, max_new_tokens, max_prompt_tokens)
        prompt = build_prompt(self.tokenizer, prefix=prefix, suffix=suffix, path=path, cfg=cfg)
        rng = torch.Generator().manual_seed(seed) if temperature > 0 else None
        tokens = generate(self.model, prompt, max_new_tokens=max_new_tokens,
                          stop_ids=self.tokenizer.stop_ids if stop_ids is None else stop_ids,
                          temperature=temperature, top_k=top_k, top_p=top_p, rng=rng,
                          vocab_size=self.tokenizer.vocab_size)
        new_ids: list[int] = []
        while True:
            try:
                new_ids.append(next(tokens))
            except StopIteration as done:  # the generator returns its stop reason
                stop_reason = done.value
                break
        num_generated = len(new_ids)
        if stop_reason != "stop":  # cut mid-character: drop the bytes of the unfinished UTF-8 sequence
            for _ in range(3):
                if not new_ids or not self.tokenizer.decode(new_ids[-4:]).endswith("\ufffd"):
                    break
                new_ids.pop()
        return Completion(text=self.tokenizer.decode(new_ids), prompt_tokens=len(prompt),
                          new_tokens=num_generated, stop_reason=stop_reason,
                          seconds=time.perf_counter() - start)
