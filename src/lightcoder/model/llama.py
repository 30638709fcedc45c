"""The LLaMA-style decoder of aiXcoder-7B: single device, plain PyTorch, no torch.distributed.

Pre-norm RMSNorm, RoPE (rotate-half convention, identical to HF LlamaForCausalLM, so conversion is a
pure rename), grouped-query attention through F.scaled_dot_product_attention, SwiGLU feed-forward
w2(silu(w1 x) * w3 x), untied input/output embeddings, no biases.

Build on the meta device, then materialize and initialize:
    with torch.device("meta"): model = Transformer(cfg)
    model.to_empty(device="cpu"); model.init_weights(seed=0)

Shape legend: B batch, T new tokens, S cached + new tokens, D model dim, H query heads,
K key/value heads, Hd head dim, F ffn dim, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightcoder.model.config import ModelConfig

# ---------------------------------------------------------------------------------------------
# Math as free functions


def precompute_rope(head_dim: int, max_seq_len: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (max_seq_len, head_dim), computed in fp32 exactly as HF Llama does."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    positions = torch.arange(max_seq_len, dtype=torch.int64, device=device).float()
    freqs = torch.outer(positions, inv_freq)  # (S, Hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (S, Hd): the two halves share frequencies
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, Hd); cos/sin (1, T, 1, Hd) for the positions of x, in x's dtype (as HF Llama)."""
    return x * cos + rotate_half(x) * sin


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalize in fp32, scale in the input dtype (as HF LlamaRMSNorm)."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


# ---------------------------------------------------------------------------------------------
# Modules


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class KVCache:
    """Preallocated keys/values of one layer, (B, K, max_len, Hd) each; position p lives at [:, :, p]."""

    def __init__(self, batch_size: int, max_len: int, n_kv_heads: int, head_dim: int, *, dtype, device):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, start_pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, K, T, Hd) at positions start_pos.., return the filled prefix (B, K, S, Hd)."""
        end = start_pos + k.shape[2]
        self.k[:, :, start_pos:end] = k
        self.v[:, :, start_pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)  # (B, T, H, Hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, K, Hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, K, Hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, Hd)
        mask, is_causal = None, T > 1
        if kv_cache is not None:
            k, v = kv_cache.update(start_pos, k, v)  # (B, K, S, Hd), S = start_pos + T
            if start_pos > 0 and T > 1:
                # Chunked prefill: query i sits at start_pos + i and sees keys 0..start_pos + i.
                # (is_causal would align the triangle to the top-left corner, which is wrong here.)
                S = k.shape[2]
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=start_pos)  # (T, S)
                is_causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=self.n_kv_heads != self.n_heads
        )  # (B, H, T, Hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*Hd)
        return self.wo(y)  # (B, T, D)


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)  # gate
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)  # down
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)  # up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (B, T, F) -> (B, T, D)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, kv_cache, start_pos)
        return x + self.feed_forward(self.ffn_norm(x))  # (B, T, D)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Non-persistent: not in state_dict; rebuilt by init_rope() after to_empty / loading.
        cos, sin = precompute_rope(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, Hd)
        self.register_buffer("rope_sin", sin, persistent=False)  # (max_seq_len, Hd)

    def init_rope(self) -> None:
        """(Re)compute the RoPE tables on the model's device, in fp32."""
        device = self.output.weight.device
        cos, sin = precompute_rope(self.cfg.head_dim, self.cfg.max_seq_len, self.cfg.rope_theta, device)
        self.rope_cos, self.rope_sin = cos, sin

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Normal(0, init_std) for embeddings and linears, init_std / sqrt(2 n_layers) for the
        residual output projections (wo, w2; GPT-2 scaled init), ones for norms.

        Draws on a seeded CPU generator in a fixed order, so the weights do not depend on the device.
        """
        gen = torch.Generator(device="cpu").manual_seed(seed)
        std, residual_std = self.cfg.init_std, self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
                continue
            s = residual_std if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")) else std
            p.copy_(torch.empty(p.shape, dtype=torch.float32).normal_(0.0, s, generator=gen))
        self.init_rope()

    def init_kv_cache(self, batch_size: int, max_len: int) -> list[KVCache]:
        """One preallocated cache per layer, in the model's dtype and device."""
        if max_len > self.cfg.max_seq_len:
            raise ValueError(f"KV cache length {max_len} exceeds ModelConfig.max_seq_len {self.cfg.max_seq_len}")
        w = self.output.weight
        return [
            KVCache(batch_size, max_len, self.cfg.n_kv_heads, self.cfg.head_dim, dtype=w.dtype, device=w.device)
            for _ in self.layers
        ]

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache: list[KVCache] | None = None,
        start_pos: int = 0,
        last_only: bool = False,
    ):
        """tokens (B, T) long at positions start_pos..start_pos+T-1 -> logits (B, T, V), or (B, 1, V)
        with last_only; with targets (B, T) (-100 = ignore) -> (logits, mean cross-entropy in fp32)."""
        B, T = tokens.shape
        if start_pos + T > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence of {start_pos + T} tokens exceeds ModelConfig.max_seq_len {self.cfg.max_seq_len}"
            )
        if kv_cache is not None and start_pos + T > kv_cache[0].max_len:
            raise ValueError(f"{start_pos + T} positions do not fit the KV cache of {kv_cache[0].max_len}")
        h = self.tok_embeddings(tokens)  # (B, T, D)
        cos = self.rope_cos[None, start_pos : start_pos + T, None, :].to(h.dtype)  # (1, T, 1, Hd)
        sin = self.rope_sin[None, start_pos : start_pos + T, None, :].to(h.dtype)  # (1, T, 1, Hd)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, None if kv_cache is None else kv_cache[i], start_pos)
        if last_only:
            h = h[:, -1:, :]  # (B, 1, D)
        logits = self.output(self.norm(h))  # (B, T|1, V)
        if targets is None:
            return logits
        if last_only:
            raise ValueError("targets need logits at every position; do not pass last_only=True with targets")
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
        )
        return logits, loss
