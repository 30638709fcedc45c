"""Token-level generation: prefill, decode one token at a time with a preallocated KV cache, sample.

The engine knows nothing about text or tokenizers (prompts.py builds ids, completer.py decodes).

Example:
    for token in generate(model, ids, max_new_tokens=64, stop_ids={2}):
        print(token)
"""

from __future__ import annotations

from typing import Collection, Iterator

import torch

from lightcoder.model.llama import KVCache, Transformer


def sample_next(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> int:
    """Next token id from logits (V,): argmax when temperature == 0, else a draw from the
    temperature-scaled distribution restricted to the top_k tokens (0 = all) and to the smallest
    set whose probability reaches top_p (1.0 = all). The draw uses `rng` only."""
    if temperature < 0 or top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
    if temperature == 0:
        return int(logits.argmax())
    if rng is None:
        raise ValueError("sampling (temperature > 0) needs an explicit rng: torch.Generator().manual_seed(seed)")
    logits = logits.float().to(rng.device) / temperature  # (V,)
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (V,)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=rng))


def prefill(model: Transformer, prompt: torch.Tensor, kv_cache: list[KVCache]) -> torch.Tensor:
    """Run the whole prompt (1, T) through the model once; logits (V,) for the next token."""
    return model(prompt, kv_cache=kv_cache, start_pos=0, last_only=True)[0, -1]


def decode_one(model: Transformer, token: int, pos: int, kv_cache: list[KVCache]) -> torch.Tensor:
    """Feed one token at position pos; logits (V,) for the token after it."""
    x = torch.tensor([[token]], dtype=torch.long, device=kv_cache[0].k.device)  # (1, 1)
    return model(x, kv_cache=kv_cache, start_pos=pos)[0, -1]


@torch.inference_mode()
def generate(
    model: Transformer,
    prompt_ids: list[int],
    *,
    max_new_tokens: int,
    stop_ids: Collection[int],
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
    vocab_size: int | None = None,
) -> Iterator[int]:
    """Yield up to max_new_tokens new token ids; stops before yielding a stop id.

    vocab_size: when the tokenizer knows fewer ids than the model's (padded) vocabulary, only ids
    below it are ever produced (aiXcoder-7B pads its vocabulary to 49152).

    The generator's return value (StopIteration.value) says why it ended: "stop" (a stop id),
    "length" (max_new_tokens reached) or "max_seq_len" (the model's context is full).
    Sampling without an rng uses a generator seeded with 0, so runs are reproducible.
    """
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; a prompt starts at least with <s>")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    max_seq_len = model.cfg.max_seq_len
    if len(prompt_ids) >= max_seq_len:
        raise ValueError(
            f"prompt of {len(prompt_ids)} tokens leaves no room in max_seq_len {max_seq_len}; "
            "lower the prompt budget (PromptConfig.max_prompt_tokens)"
        )
    if max_new_tokens == 0:
        return "length"
    if temperature > 0 and rng is None:
        rng = torch.Generator().manual_seed(0)
    device = model.output.weight.device
    kv_cache = model.init_kv_cache(1, min(len(prompt_ids) + max_new_tokens, max_seq_len))
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    logits = prefill(model, prompt, kv_cache)
    pos = len(prompt_ids)
    stop_ids = frozenset(stop_ids)
    for i in range(max_new_tokens):
        if vocab_size is not None and vocab_size < logits.size(-1):
            logits[..., vocab_size:] = float("-inf")  # ids no tokenizer can decode
        token = sample_next(logits, temperature, top_k, top_p, rng)
        if token in stop_ids:
            return "stop"
        yield token
        if i + 1 == max_new_tokens:
            return "length"
        if pos >= kv_cache[0].max_len:
            return "max_seq_len"
        logits = decode_one(model, token, pos, kv_cache)
        pos += 1
    return "length"
