"""One-token decode step with fused weights: the same math as `Transformer.forward` for T = 1,
in about half the tensor ops, and chunks of a few tokens (prompt tails, drafts) the same way.

Fusions: wq|wk|rotate_half(wq|wk)|wv -> one matrix (RoPE is then one addcmul, the softmax scale
is folded into wq); w1|w3 (gate|up) -> one 2F x D matrix; residual adds inside addmm; attention as
two small matmuls over the cached keys (grouped-query heads viewed as (K, H/K), keys not repeated).
Matrices are stored transposed, (in, out) row-major, which is ~2x faster for a few rows on CPU
(decode reads every weight once per token, so that layout decides the step time). The cost: a
second copy of the weights next to the model's. The KV cache is the model's own (`KVCache`), so
prefill through `Transformer.forward` and decode through this step mix freely. `verify` returns the
logits of every fed token: speculative decoding checks several drafted ids in one pass.

Example:
    step = FusedDecoder(model)
    logits = step(token_id, pos, kv_cache)   # (V,), as model(tensor([[token_id]]), kv_cache, pos)[0, -1]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lightcoder.model.llama import KVCache, Transformer, rms_norm

_SMALL_CHUNK = 16  # chunks up to this many tokens (drafts, keystroke tails) attend through two matmuls


def _rotate_half_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of W such that (W' x) = rotate_half(W x) per head: [x1, x2] -> [-x2, x1]."""
    rows = w.view(n_heads, 2, -1, w.shape[-1])  # (heads, halves, Hd/2, D)
    return torch.cat((-rows[:, 1:], rows[:, :1]), dim=1).reshape(w.shape)


class FusedDecoder:
    def __init__(self, model: Transformer):
        cfg = model.cfg
        self.model = model
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.eps = cfg.norm_eps
        self.fp32 = model.output.weight.dtype == torch.float32
        self.layers = []
        scale = 1.0 / math.sqrt(cfg.head_dim)
        with torch.no_grad():
            for layer in model.layers:
                a, f = layer.attention, layer.feed_forward
                # The softmax scale is folded into the query rows (RoPE is linear, so it commutes), and
                # rotate_half(q|k) comes out of the same matmul as extra rows: no cat/neg per step.
                wq = a.wq.weight * scale
                wqk = torch.cat([wq, a.wk.weight])
                wqk_rot = torch.cat([_rotate_half_rows(wq, cfg.n_heads), _rotate_half_rows(a.wk.weight, cfg.n_kv_heads)])
                # Every matrix is stored transposed, (in, out) row-major: x @ W.T as mm(x, W_t). For a few
                # rows this runs about 2x faster on CPU than F.linear's (out, in) layout (measured:
                # 1.6 vs 3.2 ms per pass over the quickstart model's weights, 1 thread).
                self.layers.append((
                    layer.attention_norm.weight,
                    torch.cat([wqk, wqk_rot, a.wv.weight]).t().contiguous(),  # (D, 2(H+K)*Hd + K*Hd)
                    a.wo.weight.t().contiguous(),  # (H*Hd, D): addmm(h, y, wo_t) adds the residual in the same op
                    layer.ffn_norm.weight,
                    torch.cat([f.w1.weight, f.w3.weight]).t().contiguous(),  # (D, 2F)
                    f.w2.weight.t().contiguous(),  # (F, D)
                    # ... except w2 for one row: its (D, F) layout (a transposed view here) measured
                    # faster for M = 1 (~80 vs ~110 us), the (F, D) copy for chunks.
                    f.w2.weight.t(),
                ))
            self.output_t = model.output.weight.t().contiguous()  # (D, V)
        self.ffn_dim = cfg.ffn_dim
        self.qk_dim = (cfg.n_heads + cfg.n_kv_heads) * cfg.head_dim
        self.row_counts: dict[int, list[int]] = {}  # thread count -> row-invariant counts (batch_forward.py)

    @staticmethod
    def supports(model: Transformer) -> bool:
        """Only an unmodified single-device model (no compile/FSDP wrappers) with plain Linear layers."""
        return type(model) is Transformer and all(
            type(layer.attention.wq) is torch.nn.Linear for layer in model.layers)

    def _norm(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.fp32:
            return F.rms_norm(h, (h.shape[-1],), weight, self.eps)  # one kernel; same math in fp32
        return rms_norm(h, weight, self.eps)

    @torch.inference_mode()
    def __call__(self, token: int, pos: int, kv_cache: list[KVCache]) -> torch.Tensor:
        m = self.model
        H, K, Hd, n = self.n_heads, self.n_kv, self.head_dim, self.qk_dim
        h = m.tok_embeddings.weight[token][None]  # (1, D)
        cos = m.rope_cos[pos].to(h.dtype)  # (Hd,)
        sin = m.rope_sin[pos].to(h.dtype)
        for (attn_norm, wqkv, wo_t, ffn_norm, w13, _, w2_view), cache in zip(self.layers, kv_cache):
            qkv = torch.mm(self._norm(h, attn_norm), wqkv)[0]  # (2n + K*Hd,)
            qk, qk_rot, v = qkv[:n], qkv[n:2 * n], qkv[2 * n:]
            qk = torch.addcmul(qk.view(H + K, Hd) * cos, qk_rot.view(H + K, Hd), sin)  # RoPE, (H+K, Hd)
            cache.k[0, :, pos] = qk[H:]  # (K, Hd)
            cache.v[0, :, pos] = v.view(K, Hd)
            keys, values = cache.k[0, :, :pos + 1], cache.v[0, :, :pos + 1]  # (K, S, Hd)
            q = qk[:H].view(K, H // K, Hd)  # query heads grouped by their key/value head
            out = torch.matmul(torch.matmul(q, keys.transpose(1, 2)).softmax(-1), values)  # (K, G, Hd)
            h = torch.addmm(h, out.view(1, H * Hd), wo_t)  # h + attention output, (1, D)
            gate_up = torch.mm(self._norm(h, ffn_norm), w13)  # (1, 2F)
            h = torch.addmm(h, F.silu(gate_up[:, :self.ffn_dim]) * gate_up[:, self.ffn_dim:], w2_view)
        return torch.mm(self._norm(h, m.norm.weight), self.output_t)[0]  # (V,)

    def prefill(self, tokens: list[int], pos: int, kv_cache: list[KVCache]) -> torch.Tensor:
        """Several new tokens at positions pos.. (the changed tail of a prompt); logits (V,) of the last."""
        return self.chunk(tokens, pos, kv_cache, logits_from=len(tokens) - 1)[0]

    def verify(self, tokens: list[int], pos: int, kv_cache: list[KVCache], logits_from: int = 0) -> torch.Tensor:
        """Logits (T - logits_from, V) at new tokens logits_from.. of several at positions pos.. (row i: the
        id after tokens[logits_from + i]); one pass over the weights checks drafted ids (speculative decoding)."""
        return self.chunk(tokens, pos, kv_cache, logits_from=logits_from)

    @torch.inference_mode()
    def chunk(self, tokens: list[int], pos: int, kv_cache: list[KVCache], *, logits_from: int) -> torch.Tensor:
        """T new tokens at positions pos..: logits (T - logits_from, V) of tokens logits_from...

        Same fusions as the one-token step; attention through SDPA with the chunk's causal mask.
        """
        m = self.model
        H, K, Hd, n = self.n_heads, self.n_kv, self.head_dim, self.qk_dim
        T = len(tokens)
        end = pos + T
        h = m.tok_embeddings.weight[torch.tensor(tokens, device=m.output.weight.device)]  # (T, D)
        cos = m.rope_cos[pos:end, None].to(h.dtype)  # (T, 1, Hd)
        sin = m.rope_sin[pos:end, None].to(h.dtype)
        # Query i sits at pos + i and sees keys 0..pos + i.
        mask = torch.ones(T, end, dtype=torch.bool, device=h.device).tril(diagonal=pos)  # (T, S)
        small = T <= _SMALL_CHUNK
        if small:  # additive mask for two plain matmuls (cheaper than SDPA's kernel for a few queries)
            bias = torch.zeros(T, end, dtype=h.dtype, device=h.device).masked_fill_(~mask, float("-inf"))
        for (attn_norm, wqkv, wo_t, ffn_norm, w13, w2_t, _), cache in zip(self.layers, kv_cache):
            qkv = torch.mm(self._norm(h, attn_norm), wqkv)  # (T, 2n + K*Hd)
            qk = torch.addcmul(qkv[:, :n].view(T, H + K, Hd) * cos, qkv[:, n:2 * n].view(T, H + K, Hd), sin)
            cache.k[0, :, pos:end] = qk[:, H:].transpose(0, 1)  # (K, T, Hd)
            cache.v[0, :, pos:end] = qkv[:, 2 * n:].view(T, K, Hd).transpose(0, 1)
            if small:
                # Query heads grouped by their key/value head: (K, G*T, Hd), rows ordered (g, t).
                q = qk[:, :H].reshape(T, K, H // K, Hd).permute(1, 2, 0, 3).reshape(K, H // K * T, Hd)
                scores = torch.matmul(q, cache.k[0, :, :end].transpose(1, 2))  # (K, G*T, S); scale is in wq
                scores = scores.view(K, H // K, T, end).add_(bias).softmax(-1).view(K, H // K * T, end)
                out = torch.matmul(scores, cache.v[0, :, :end])  # (K, G*T, Hd)
                y = out.view(K, H // K, T, Hd).permute(2, 0, 1, 3).reshape(T, H * Hd)
            else:
                q = qk[:, :H].transpose(0, 1)[None]  # (1, H, T, Hd); the softmax scale is already in wq
                out = F.scaled_dot_product_attention(q, cache.k[:, :, :end], cache.v[:, :, :end], attn_mask=mask,
                                                     scale=1.0, enable_gqa=H != K)  # (1, H, T, Hd)
                y = out[0].transpose(0, 1).reshape(T, H * Hd)
            h = torch.addmm(h, y, wo_t)  # (T, D)
            gate_up = torch.mm(self._norm(h, ffn_norm), w13)  # (T, 2F)
            h = torch.addmm(h, F.silu(gate_up[:, :self.ffn_dim]) * gate_up[:, self.ffn_dim:], w2_t)
        return torch.mm(self._norm(h[logits_from:], m.norm.weight), self.output_t)  # (T|1, V)
