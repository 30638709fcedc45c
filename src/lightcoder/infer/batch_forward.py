"""One forward pass over the new tokens of several sequences at once (continuous batching).

Decoding a small model on a CPU is bound by reading the weights; a pass over R rows costs little
more than a pass over one. `forward_segments` stacks the new tokens of every running request (a
decode step, a drafted continuation, a chunk of a newcomer's prompt) into one (R, D) matrix, runs
every weight matmul once over it, and attends per segment against that segment's own KV cache (a
slot: keys/values of one sequence, position p at [:, :, p]).

Batch invariance (a request's greedy tokens do not depend on who else is in the batch): a BLAS
picks its kernel by the number of rows, and some counts round differently (one row takes gemv; MKL
on an AVX-512 EPYC with 2 threads also splits 2, 3, 5-7 and 9-11 rows its own way). So the stacked
rows of the layers' matmuls are padded with dummy rows up to a count whose every row comes out as in
a large matmul, probed once per decoder and thread count (`row_invariant_counts`); the output layer
goes one row at a time (the same one-row kernel in any batch); attention is computed per segment, so
its shapes depend on that segment alone.

Example:
    dec = FusedDecoder(model)
    a = Segment(kv=slot_a_kv, pos=0, tokens=prompt_ids, logits_from=len(prompt_ids) - 1)
    b = Segment(kv=slot_b_kv, pos=57, tokens=[tok], logits_from=0)
    logits_a, logits_b = forward_segments(dec, [a, b])  # (1, V) each
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightcoder.infer.fused_decode import _SMALL_CHUNK, FusedDecoder
from lightcoder.model.llama import KVCache


@dataclass
class Segment:
    kv: list[KVCache]  # the sequence's cache, one per layer, (1, K, capacity, Hd) each
    pos: int  # position of tokens[0]; keys/values 0..pos-1 are already in kv
    tokens: list[int]
    logits_from: int  # logits for tokens[logits_from:] (len(tokens) = none)


PROBE_ROWS = 32  # row counts at or above this are taken as row-invariant (the large-matmul path)


def row_invariant_counts(weights: list[torch.Tensor], *, probe_rows: int = PROBE_ROWS) -> list[int]:
    """The row counts M <= probe_rows for which mm and addmm of any M stacked rows against every weight
    (in, out) give each row exactly the bits it gets in a probe_rows-row matmul, at either end.
    Example (MKL, AVX-512, 2 threads): [4, 8, 12, 13, ..., 32]; on a BLAS without small-M paths, 1..32."""
    gen = torch.Generator().manual_seed(0)
    ok = set(range(1, probe_rows + 1))
    for w in weights:
        w = w[:, :1024]  # the kernel is chosen by the row count; a slice of the columns keeps a 7B probe cheap
        x = torch.randn(probe_rows, w.shape[0], generator=gen).to(w.device, w.dtype)
        c = torch.randn(probe_rows, w.shape[1], generator=gen).to(w.device, w.dtype)
        full, full_add = torch.mm(x, w), torch.addmm(c, x, w)
        for m in sorted(ok):
            ends = (slice(0, m), slice(probe_rows - m, probe_rows))
            if not all(torch.equal(torch.mm(x[r], w), full[r]) and torch.equal(torch.addmm(c[r], x[r], w), full_add[r])
                       for r in ends):
                ok.discard(m)
    return sorted(ok | {probe_rows})


def padded_row_count(rows: int, dec: FusedDecoder) -> int:
    """The least row-invariant count >= rows for this decoder's weights at the current thread count."""
    if rows >= PROBE_ROWS:
        return rows
    threads = torch.get_num_threads()
    if threads not in dec.row_counts:
        layer = dec.layers[0]
        dec.row_counts[threads] = row_invariant_counts([layer[1], layer[2], layer[4], layer[5]])  # logits: row by row
    return next(m for m in dec.row_counts[threads] if m >= rows)


def _attend(q: torch.Tensor, cache: KVCache, pos: int, bias: torch.Tensor | None, mask: torch.Tensor | None,
            n_heads: int, n_kv: int) -> torch.Tensor:
    """Queries q (T, H, Hd) at positions pos.. against keys 0..pos+T-1 of one cache -> (T, H*Hd)."""
    T, H, Hd = q.shape
    end = pos + T
    G = n_heads // n_kv
    if T == 1:  # one query sees every key: no mask
        scores = torch.matmul(q.view(n_kv, G, Hd), cache.k[0, :, :end].transpose(1, 2)).softmax(-1)  # (K, G, S)
        return torch.matmul(scores, cache.v[0, :, :end]).view(1, H * Hd)
    if bias is not None:  # few queries: two plain matmuls (cheaper than SDPA's kernel)
        qg = q.reshape(T, n_kv, G, Hd).permute(1, 2, 0, 3).reshape(n_kv, G * T, Hd)  # rows (g, t)
        scores = torch.matmul(qg, cache.k[0, :, :end].transpose(1, 2))  # (K, G*T, S); scale is in wq
        scores = scores.view(n_kv, G, T, end).add_(bias).softmax(-1).view(n_kv, G * T, end)
        out = torch.matmul(scores, cache.v[0, :, :end])  # (K, G*T, Hd)
        return out.view(n_kv, G, T, Hd).permute(2, 0, 1, 3).reshape(T, H * Hd)
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], cache.k[:, :, :end], cache.v[:, :, :end],
                                         attn_mask=mask, scale=1.0, enable_gqa=n_heads != n_kv)  # (1, H, T, Hd)
    return out[0].transpose(0, 1).reshape(T, H * Hd)


def _masks(seg: Segment, dtype, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(additive bias for the matmul path, bool mask for SDPA); query i sees keys 0..pos+i."""
    T, end = len(seg.tokens), seg.pos + len(seg.tokens)
    if T == 1:
        return None, None  # _attend needs no mask
    mask = torch.ones(T, end, dtype=torch.bool, device=device).tril(diagonal=seg.pos)  # (T, S)
    if T <= _SMALL_CHUNK:
        return torch.zeros(T, end, dtype=dtype, device=device).masked_fill_(~mask, float("-inf")), None
    return None, mask


@torch.inference_mode()
def forward_segments(dec: FusedDecoder, segments: list[Segment]) -> list[torch.Tensor]:
    """Feed every segment's tokens (writing their keys/values into its cache); logits
    (T - logits_from, V) per segment. Segments of one sequence may follow each other in the list
    (chunks of one prompt): within each layer they attend in list order, so a later chunk sees the
    keys an earlier one wrote."""
    m = dec.model
    H, K, Hd, n = dec.n_heads, dec.n_kv, dec.head_dim, dec.qk_dim
    device = m.output.weight.device
    tokens = [t for s in segments for t in s.tokens]
    pad = padded_row_count(len(tokens), dec) - len(tokens)  # dummy rows: see row_invariant_counts
    tokens = tokens + tokens[-1:] * pad  # each dummy repeats the last row (its keys/values are never stored)
    R = len(tokens)
    h = m.tok_embeddings.weight[torch.tensor(tokens, device=device)]  # (R, D)
    cos, sin = _rope_rows(m, segments, pad, h.dtype)  # (R, 1, Hd) each
    masks = [_masks(s, h.dtype, device) for s in segments]
    bounds, start = [], 0
    for s in segments:
        bounds.append((start, start + len(s.tokens)))
        start += len(s.tokens)
    for li, (attn_norm, wqkv, wo_t, ffn_norm, w13, w2_t, _) in enumerate(dec.layers):
        qkv = torch.mm(dec._norm(h, attn_norm), wqkv)  # (R, 2n + K*Hd)
        qk = torch.addcmul(qkv[:, :n].view(R, H + K, Hd) * cos, qkv[:, n:2 * n].view(R, H + K, Hd), sin)
        v = qkv[:, 2 * n:].view(R, K, Hd)
        ys = []
        for s, (a, b), (bias, mask) in zip(segments, bounds, masks):
            cache = s.kv[li]
            cache.k[0, :, s.pos:s.pos + b - a] = qk[a:b, H:].transpose(0, 1)  # (K, T, Hd)
            cache.v[0, :, s.pos:s.pos + b - a] = v[a:b].transpose(0, 1)
            ys.append(_attend(qk[a:b, :H], cache, s.pos, bias, mask, H, K))
        if pad:  # the dummy rows attend like the last real one
            ys.append(ys[-1][-1:].expand(pad, -1))
        h = torch.addmm(h, torch.cat(ys) if len(ys) > 1 else ys[0], wo_t)  # (R, D)
        gate_up = torch.mm(dec._norm(h, ffn_norm), w13)  # (R, 2F)
        h = torch.addmm(h, F.silu(gate_up[:, :dec.ffn_dim]) * gate_up[:, dec.ffn_dim:], w2_t)
    rows = [a + s.logits_from + i for s, (a, b) in zip(segments, bounds) for i in range(b - a - s.logits_from)]
    counts = [max(0, len(s.tokens) - s.logits_from) for s in segments]
    if not rows:
        return [h.new_empty(0, m.output.weight.shape[0]) for _ in segments]
    normed = dec._norm(_output_rows(h, rows), m.norm.weight)  # (n, D)
    # One row at a time: the output layer is the widest matmul, where padding to 4 rows would double a lone
    # decode step's cost, and a one-row product takes the same kernel in any batch.
    logits = torch.cat([torch.mm(normed[i:i + 1], dec.output_t) for i in range(len(rows))])  # (n, V)
    return [logits] if len(segments) == 1 else list(logits.split(counts))


def _rope_rows(m, segments: list[Segment], pad: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE cos/sin (R, 1, Hd) for the stacked rows, the `pad` dummies at the last row's position; one
    segment's rows are a slice (no index tensor)."""
    if len(segments) == 1 and not pad:
        s = segments[0]
        rows = slice(s.pos, s.pos + len(s.tokens))
    else:
        positions = [s.pos + i for s in segments for i in range(len(s.tokens))]
        rows = torch.tensor(positions + positions[-1:] * pad, device=m.rope_cos.device)
    return m.rope_cos[rows, None].to(dtype), m.rope_sin[rows, None].to(dtype)


def _output_rows(h: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """h's rows whose logits are wanted: a slice where they are consecutive, else gathered."""
    lo, hi = rows[0], rows[-1] + 1
    return h[lo:hi] if hi - lo == len(rows) else h[torch.tensor(rows, device=h.device)]
