"""Model shape: one dataclass, named presets next to it, and the parameter-count arithmetic.

The architecture is fixed (LLaMA-style: pre-norm RMSNorm, RoPE rotate-half, SwiGLU, GQA, untied
embeddings, no biases; research/aixcoder-7b.md §1.1); only sizes vary.

Example: get_preset("lc-quickstart", vocab_size=4096).n_layers -> 4
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable


@dataclass(kw_only=True)
class ModelConfig:
    # Defaults are the lc-quickstart shape, so ModelConfig() is a usable small model.
    dim: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int = 3  # GQA: n_heads // n_kv_heads query heads share one key/value head
    ffn_dim: int = 512  # SwiGLU hidden size
    vocab_size: int = 8192
    max_seq_len: int = 1024  # RoPE table length and the longest sequence the model accepts
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        for name in ("rope_theta", "norm_eps", "init_std"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive number, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(
                f"ModelConfig.dim ({self.dim}) must be divisible by n_heads ({self.n_heads}); "
                "change one of them"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"ModelConfig.n_heads ({self.n_heads}) must be divisible by n_kv_heads "
                f"({self.n_kv_heads}); pick n_kv_heads among the divisors of n_heads"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"ModelConfig head_dim = dim / n_heads = {self.head_dim} must be even for RoPE; "
                "change dim or n_heads"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def num_params(cfg: ModelConfig, non_embedding: bool = True) -> int:
    """Exact parameter count of `Transformer(cfg)`; non_embedding drops tok_embeddings and output."""
    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    attention = cfg.dim * q_dim + 2 * cfg.dim * kv_dim + q_dim * cfg.dim  # wq, wk, wv, wo
    feed_forward = 3 * cfg.dim * cfg.ffn_dim  # w1, w2, w3
    norms = 2 * cfg.dim  # attention_norm, ffn_norm
    total = cfg.n_layers * (attention + feed_forward + norms) + cfg.dim  # + final norm
    if not non_embedding:
        total += 2 * cfg.vocab_size * cfg.dim  # untied tok_embeddings and output
    return total


def _aixcoder_7b() -> ModelConfig:
    # The published shape (HF config.json of aiXcoder/aixcoder-7b-base): 7.03B non-embedding, 7.43B total.
    return ModelConfig(
        dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14464, vocab_size=49152,
        max_seq_len=32768, rope_theta=256000.0, norm_eps=1e-6,
    )


def _lc_tiny() -> ModelConfig:
    # Unit tests: ~0.1M non-embedding parameters, GQA and a non-default theta so both are exercised.
    return ModelConfig(
        dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192, vocab_size=512,
        max_seq_len=256, rope_theta=256000.0,
    )


def _lc_quickstart() -> ModelConfig:
    # The laptop-CPU quickstart model: 1.6M non-embedding parameters (+3.1M embeddings at vocab 8192).
    # Chosen by measurement (docs/ablation.md): in 12 CPU minutes it sees ~5M tokens, and at that compute
    # this shape beat the earlier 3.7M one (dim 256, 5 layers: fewer tokens, 1.5x slower steps) and a
    # dim-128 one (more tokens, less capacity) on held-out bits per byte and stop rate.
    # ffn_dim ~2.7 x dim, head_dim 32, GQA 2:1. theta 10000 suits 1k-token windows.
    return ModelConfig(
        dim=192, n_layers=4, n_heads=6, n_kv_heads=3, ffn_dim=512, vocab_size=8192,
        max_seq_len=1024, rope_theta=10000.0,
    )


def _lc_quickstart_256() -> ModelConfig:
    # The quickstart model before the context-level FIM work (benchmarks of that time used it).
    return ModelConfig(
        dim=256, n_layers=5, n_heads=8, n_kv_heads=4, ffn_dim=704, vocab_size=8192,
        max_seq_len=1024, rope_theta=10000.0,
    )


def _lc_small() -> ModelConfig:
    # A GPU-sized run: 22M non-embedding parameters, 2k context, aiXcoder's theta.
    return ModelConfig(
        dim=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn_dim=1280, vocab_size=8192,
        max_seq_len=2048, rope_theta=256000.0,
    )


def _lc_125m() -> ModelConfig:
    # GPU benchmark, GPT-3-small class: 76M non-embedding + 76M embedding parameters at aiXcoder's vocabulary,
    # 4k context. head_dim 64, 3 query heads per kv head.
    return ModelConfig(
        dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048, vocab_size=49152,
        max_seq_len=4096, rope_theta=256000.0,
    )


def _lc_1b() -> ModelConfig:
    # GPU benchmark, TinyLlama class: 0.81B non-embedding + 0.20B embedding parameters, 4k context,
    # head_dim 128 (the flash-attention sweet spot), GQA 4:1 as aiXcoder-7B.
    return ModelConfig(
        dim=2048, n_layers=18, n_heads=16, n_kv_heads=4, ffn_dim=5632, vocab_size=49152,
        max_seq_len=4096, rope_theta=256000.0,
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "aixcoder-7b": _aixcoder_7b,
    "lc-tiny": _lc_tiny,
    "lc-quickstart": _lc_quickstart,
    "lc-quickstart-256": _lc_quickstart_256,
    "lc-small": _lc_small,
    "lc-125m": _lc_125m,
    "lc-1b": _lc_1b,
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """A named shape with some fields replaced (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)}
    if unknown := sorted(set(overrides) - known):
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; known fields: {sorted(known)}")
    return replace(PRESETS[name](), **overrides)
