"""The LLaMA-style decoder of aiXcoder-7B: single device, plain PyTorch, no torch.distributed.

Pre-norm RMSNorm, RoPE (rotate-half convention, identical to HF LlamaForCausalLM, so conversion is a
pure rename), grouped-query attention through F.scaled_dot_product_attention, SwiGLU feed-forward
w2(silu(w1 x) * w3 x), untied input/output embeddings, no biases.

Build on the meta device, then materialize and initialize:
    with torch.device("meta"): model = Transformer(cfg)
    model.to_empty(device="cpu"); model.init_weights(seed=0)

Packed training windows hold several documents; `document_ids` (B, T) makes attention block-causal
(a token sees only earlier tokens of its own document), e.g. tokens `a <s> b c <s> d` ->
`document_ids_from_tokens` = `0 1 1 1 2 2`. Without it attention is plain causal.

Shape legend: B batch, T new tokens, S cached + new tokens, D model dim, H query heads,
K key/value heads, Hd head dim, F ffn dim, V vocab.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lightcoder.model.config import ModelConfig
from lightcoder.model.cpu_attention import block_causal_attention, fits_block_causal

# ---------------------------------------------------------------------------------------------
# Math as free functions


def precompute_rope(head_dim: int, max_seq_len: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (max_seq_len, head_dim), computed in fp32 exactly as HF Llama does."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    positions = torch.arange(max_seq_len, dtype=torch.int64, device=device).float()
    freqs = torch.outer(positions, inv_freq)  # (S, Hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (S, Hd): the two halves share frequencies
    return emb.cos(), emb.sin()


def document_ids_from_tokens(tokens: torch.Tensor, bos_id: int = 1) -> torch.Tensor:
    """(B, T) token ids -> (B, T) document index: the number of `<s>` at or before each position.

    Every packed document starts with exactly one `<s>`, so tokens before the first `<s>` of a window
    (the tail of a document cut by the window start) get id 0 and still form one document.
    """
    return torch.cumsum(tokens == bos_id, dim=-1, dtype=torch.int32)


def block_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) document ids -> (B, 1, T, T) bool mask, True where query i may attend key j:
    j <= i and both in the same document."""
    T = document_ids.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()  # (T, T)
    same_doc = document_ids[:, :, None] == document_ids[:, None, :]  # (B, T, T)
    return (same_doc & causal)[:, None]  # (B, 1, T, T), broadcast over heads


# "auto": on CPU, cpu_attention.block_causal_attention when no KV cache is in use and its saved
# probabilities fit the budget, SDPA otherwise; "sdpa": always F.scaled_dot_product_attention;
# "blocks": the CPU block kernel whenever there is no KV cache (any length, any device; for tests
# and benchmarks); "flex": FlexAttention BlockMasks for document masks (compiled on CUDA).
ATTENTION_IMPLS = ("auto", "sdpa", "blocks", "flex")


def flex_block_causal_mask(document_ids: torch.Tensor):
    """(B, T) document ids -> a FlexAttention BlockMask of the same block-causal pattern: blocks that
    are fully masked (other documents, the future) are skipped instead of computed and masked."""
    from torch.nn.attention.flex_attention import create_block_mask

    B, T = document_ids.shape

    def same_document_causal(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (document_ids[b, q_idx] == document_ids[b, kv_idx])

    return create_block_mask(same_document_causal, B, None, T, T, device=document_ids.device)


_compiled_flex = None


def flex_attention(q, k, v, block_mask, enable_gqa: bool) -> torch.Tensor:
    """FlexAttention: compiled on CUDA (where it generates a fused kernel), eager elsewhere (slow,
    for tests and CPU debugging only)."""
    from torch.nn.attention import flex_attention as fa

    global _compiled_flex
    fn = fa.flex_attention
    if q.device.type == "cuda":
        if _compiled_flex is None:
            _compiled_flex = torch.compile(fa.flex_attention, dynamic=False)
        fn = _compiled_flex
    return fn(q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, Hd); cos/sin (1, T, 1, Hd) for the positions of x, in x's dtype (as HF Llama)."""
    return x * cos + rotate_half(x) * sin


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalize in fp32, scale in the input dtype (as HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps)).

    F.rms_norm is one fused kernel (forward and backward) instead of five elementwise passes.
    """
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


class _ChunkBuffers:
    """Scratch tensors of one row chunk of `_LinearCrossEntropy`, reused across chunks and steps.

    On CPU a fresh multi-MB temporary is not free: glibc returns large freed blocks to the kernel
    (mmap'd ones always, the heap's top when it trims), and the next allocation faults every page
    in again (~1.6 us per 4 KiB page on this machine). Keeping the scratch alive avoids that; the
    loss alone got ~8% faster (1 thread).
    """

    _cache: dict[tuple, "_ChunkBuffers"] = {}

    def __init__(self, rows: int, vocab: int, dim: int, dtype: torch.dtype, device: torch.device):
        self.logits = torch.empty(rows, vocab, dtype=dtype, device=device)  # (n, V) matmul output
        self.exp = torch.empty(rows, vocab, dtype=torch.float32, device=device)  # (n, V) fp32 exp
        self.grad = torch.empty(rows, vocab, dtype=dtype, device=device)  # (n, V) softmax - one-hot
        self.grad_w = torch.empty(vocab, dim, dtype=dtype, device=device)  # (V, D) one chunk's grad_w

    @classmethod
    def get(cls, rows: int, vocab: int, dim: int, dtype: torch.dtype, device: torch.device) -> "_ChunkBuffers":
        key = (rows, vocab, dim, dtype, device)
        if key not in cls._cache:
            cls._cache.clear()  # one shape at a time: a new model or chunk size replaces the old scratch
            cls._cache[key] = cls(rows, vocab, dim, dtype, device)
        return cls._cache[key]


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `h @ weight.T` without materializing the (N, V) logits.

    Forward walks row chunks: logits chunk (n, V) in the matmul dtype -> fp32 log-sum-exp and loss ->
    the gradient of the summed loss w.r.t. the logits (softmax - one-hot) -> grad of h and weight, kept
    for backward, which only scales them by grad_output / n_valid. One pass over the logits instead of
    forward + log_softmax + backward, and peak memory of one chunk instead of B*T*V fp32 values.
    Optional row weights scale each row's loss and gradient; the mean still divides by the number of
    valid rows, so weights of 1 give the plain mean.
    """

    @staticmethod
    def forward(ctx, h, weight, targets, compute_dtype, chunk_rows, needs_grad, row_weights=None):
        # h (N, D), weight (V, D), targets (N,) long with -100 = ignore, row_weights (N,) fp32 or None
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(compute_dtype), weight.to(compute_dtype)
            N, V = h.shape[0], weight.shape[0]
            valid = targets != -100  # (N,)
            all_valid = h.device.type == "cpu" and bool(valid.all())  # (a host sync: CPU only)
            safe_targets = targets.clamp(min=0)
            loss_sum = torch.zeros((), dtype=torch.float32, device=h.device)
            grad_h = torch.empty_like(hc) if needs_grad else None  # (N, D)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if needs_grad else None  # (V, D)
            buf = (_ChunkBuffers.get(min(chunk_rows, N), V, h.shape[1], compute_dtype, h.device)
                   if h.device.type == "cpu" else None)
            for start in range(0, N, chunk_rows):
                rows = slice(start, start + chunk_rows)
                n = min(chunk_rows, N - start)
                ok, tgt = valid[rows], safe_targets[rows]
                w = None if row_weights is None else torch.where(ok, row_weights[rows], 0.0)  # (n,)
                if buf is not None:  # reuse the scratch (out= writes into its first n rows)
                    logits = torch.mm(hc[rows], wc.t(), out=buf.logits[:n])  # (n, V)
                    e = buf.exp[:n].copy_(logits)  # (n, V) fp32
                else:
                    e = (hc[rows] @ wc.t()).float()
                target_logit = e.gather(1, tgt[:, None])[:, 0]  # (n,)
                # One exp pass serves both the log-sum-exp and the softmax: e = exp(logits - max), in place.
                row_max = e.amax(dim=-1, keepdim=True)  # (n, 1)
                e.sub_(row_max).exp_()  # (n, V)
                e_sum = e.sum(dim=-1)  # (n,)
                lse = row_max[:, 0] + e_sum.log()  # (n,)
                row_loss = torch.where(ok, lse - target_logit, 0.0)  # (n,)
                loss_sum += (row_loss if w is None else row_loss * w).sum()
                if not needs_grad:  # evaluation: the loss alone
                    continue
                e.mul_(e_sum.reciprocal()[:, None])  # softmax in fp32, in place: (n, V)
                # in the matmul dtype (a separate copy: a mixed-dtype mul/div with out= takes a slow path)
                grad = buf.grad[:n].copy_(e) if buf is not None else e.to(compute_dtype)
                grad.scatter_add_(1, tgt[:, None], -ok[:, None].to(grad.dtype))  # - one-hot of valid rows
                if w is not None:
                    grad.mul_(w[:, None].to(grad.dtype))  # weighted rows; ignored rows have weight 0
                elif not all_valid:
                    grad.mul_(ok[:, None])  # ignored rows get no gradient
                torch.mm(grad, wc, out=grad_h[rows])  # (n, D)
                if buf is not None:
                    grad_w += torch.mm(grad.t(), hc[rows], out=buf.grad_w)  # (V, D), accumulated in fp32
                else:
                    grad_w += (grad.t() @ hc[rows]).float()
            n_valid = valid.sum().clamp(min=1).to(torch.float32)
        ctx.save_for_backward(grad_h, grad_w, n_valid)
        ctx.dtypes = (h.dtype, weight.dtype)
        return loss_sum / n_valid

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w, n_valid = ctx.saved_tensors
        scale = grad_loss / n_valid
        return (grad_h * scale).to(ctx.dtypes[0]), (grad_w * scale).to(ctx.dtypes[1]), None, None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         target_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean fp32 cross-entropy of logits `h @ weight.T` (h (..., D), weight (V, D), targets (...),
    -100 = ignore), in the autocast dtype when autocast is on; equal to
    F.cross_entropy(F.linear(h, weight).float(), targets) up to matmul rounding.
    target_weights (...): each position's loss weight (see weighted_cross_entropy)."""
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    # Chunks of about 4M logits (16 MB fp32) on CPU, 32M on GPUs.
    chunk_rows = max(64, (2**25 if device == "cuda" else 2**22) // weight.shape[0])
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    h, targets = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
    row_weights = None if target_weights is None else target_weights.reshape(-1).float()
    if device == "cpu":
        h, targets, row_weights = rows_with_targets(h, targets, row_weights)
    return _LinearCrossEntropy.apply(h, weight, targets, dtype, chunk_rows, needs_grad, row_weights)


def rows_with_targets(h: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None):
    """Only the rows of h (N, D) whose target is not -100, with their targets and weights: the head's
    (n, V) logits, softmax and gradient are then computed for the positions that have a loss only.

    Context-level FIM leaves about half the positions without one (the prompts), so this halves the
    head's work there; index_select's backward puts zeros in the dropped rows' gradient. The mean is
    unchanged (it divides by the valid rows either way). CPU only: finding the rows is a host sync.
    Example: targets [-100, 5, -100, 7] -> h[[1, 3]], [5, 7].
    """
    keep = (targets != -100).nonzero()[:, 0]  # (n,)
    if keep.numel() in (0, targets.numel()):  # nothing to drop, or nothing left (a zero loss)
        return h, targets, row_weights
    return h.index_select(0, keep), targets[keep], None if row_weights is None else row_weights[keep]


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           target_weights: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 cross-entropy of logits (..., V) and targets (...) (-100 = ignore): the mean over valid
    positions, each position's loss times its weight when target_weights (...) is given.

    Example: weights 4 on `</s>` targets and 1 elsewhere make stopping count four times a code token,
    and the loss of a batch without `</s>` is the plain mean."""
    flat_logits, flat_targets = logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1)
    if target_weights is None:
        return F.cross_entropy(flat_logits, flat_targets, ignore_index=-100)
    rows = F.cross_entropy(flat_logits, flat_targets, ignore_index=-100, reduction="none")  # (N,), 0 where ignored
    n_valid = (flat_targets != -100).sum().clamp(min=1)
    return (rows * target_weights.reshape(-1).float()).sum() / n_valid


# ---------------------------------------------------------------------------------------------
# Modules


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = rms_norm(x, self.weight, self.eps)
        if torch.is_autocast_enabled(x.device.type):
            # Cast once here rather than in each of the linears that read it (wq, wk, wv or w1, w3):
            # autocast would cast the same fp32 values to the same dtype, so the numbers are unchanged.
            out = out.to(torch.get_autocast_dtype(x.device.type))
        return out


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

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, start_pos: int = 0,
                mask: torch.Tensor | None = None, kernel: str = "sdpa") -> torch.Tensor:
        """mask: None for causal attention, or a block-causal mask (no KV cache): a (B, 1, T, T) bool
        tensor for SDPA, or a FlexAttention BlockMask. kernel: "blocks" (cpu_attention, no KV cache)
        or "sdpa" (flex when the mask is a BlockMask)."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)  # (B, T, H, Hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, K, Hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, K, Hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, Hd)
        is_causal = mask is None and T > 1
        if kv_cache is not None:
            k, v = kv_cache.update(start_pos, k, v)  # (B, K, S, Hd), S = start_pos + T
            if start_pos > 0 and T > 1:
                # Chunked prefill: query i sits at start_pos + i and sees keys 0..start_pos + i.
                # (is_causal would align the triangle to the top-left corner, which is wrong here.)
                S = k.shape[2]
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=start_pos)  # (T, S)
                is_causal = False
        if kernel == "blocks" and kv_cache is None and T > 1:
            y = block_causal_attention(q, k, v, mask)  # (B, H, T, Hd)
        elif mask is not None and not isinstance(mask, torch.Tensor):  # a FlexAttention BlockMask
            y = flex_attention(q, k, v, mask, enable_gqa=self.n_kv_heads != self.n_heads)  # (B, H, T, Hd)
        else:
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

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, start_pos: int = 0,
                mask: torch.Tensor | None = None, kernel: str = "sdpa") -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, kv_cache, start_pos, mask, kernel)
        return x + self.feed_forward(self.ffn_norm(x))  # (B, T, D)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Attention kernel and document-mask form (set by the trainer; not part of the checkpoint), one of
        # ATTENTION_IMPLS: "auto"/"sdpa"/"blocks" take a dense (B, 1, T, T) bool mask, "flex" a BlockMask.
        self.attention_impl = "auto"
        # Non-persistent: not in state_dict; rebuilt by init_rope() after to_empty / loading.
        cos, sin = precompute_rope(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, Hd)
        self.register_buffer("rope_sin", sin, persistent=False)  # (max_seq_len, Hd)

    def init_rope(self) -> None:
        """(Re)compute the RoPE tables on the model's device, in fp32."""
        device = self.output.weight.device
        cos, sin = precompute_rope(self.cfg.head_dim, self.cfg.max_seq_len, self.cfg.rope_theta, device)
        self.rope_cos, self.rope_sin = cos, sin

    def initial_weights(self, seed: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, full fp32 CPU tensor) for every parameter, in named_parameters() order.

        Normal(0, init_std) for embeddings and linears, init_std / sqrt(2 n_layers) for the residual
        output projections (wo, w2; GPT-2 scaled init), ones for norms. Draws on a seeded CPU generator
        in a fixed order, so the weights depend neither on the device nor on how they are sharded
        (train/parallel.py copies each tensor's local shard into a sharded model).
        """
        gen = torch.Generator(device="cpu").manual_seed(seed)
        std, residual_std = self.cfg.init_std, self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                yield name, torch.ones(p.shape, dtype=torch.float32)
                continue
            s = residual_std if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")) else std
            yield name, torch.empty(p.shape, dtype=torch.float32).normal_(0.0, s, generator=gen)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Fill the (materialized, unsharded) parameters with `initial_weights(seed)` and build RoPE."""
        params = dict(self.named_parameters())
        for name, value in self.initial_weights(seed):
            params[name].copy_(value)
        self.init_rope()

    def attention_kernel(self, batch: int, seq_len: int, device: torch.device, dtype: torch.dtype,
                         cached: bool) -> str:
        """"blocks" or "sdpa" for one forward, from `attention_impl` (see ATTENTION_IMPLS)."""
        if cached or self.attention_impl in ("sdpa", "flex"):
            return "sdpa"
        if self.attention_impl == "blocks":
            return "blocks"
        fits = fits_block_causal(batch, self.cfg.n_heads, seq_len, dtype)
        return "blocks" if device.type == "cpu" and fits else "sdpa"

    def init_kv_cache(self, batch_size: int, max_len: int) -> list[KVCache]:
        """One preallocated cache per layer, in the model's dtype and device."""
        if max_len > self.cfg.max_seq_len:
            raise ValueError(f"KV cache length {max_len} exceeds ModelConfig.max_seq_len {self.cfg.max_seq_len}")
        w = self.output.weight
        return [
            KVCache(batch_size, max_len, self.cfg.n_kv_heads, self.cfg.head_dim, dtype=w.dtype, device=w.device)
            for _ in self.layers
        ]

    # Over 60 lines on purpose: one readable pass (checks -> mask -> embed -> blocks -> head -> loss) in
    # HF LlamaModel's order, on the training and decoding hot path, where helper calls would only hide it.
    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache: list[KVCache] | None = None,
        start_pos: int = 0,
        last_only: bool = False,
        last_logits_only: bool = False,
        document_ids: torch.Tensor | None = None,
        fused_loss: bool = False,
        target_weights: torch.Tensor | None = None,
    ):
        """tokens (B, T) long at positions start_pos..start_pos+T-1 -> logits (B, T, V), or (B, 1, V)
        with last_logits_only (alias last_only: prefill without materializing (B, T, V));
        with targets (B, T) (-100 = ignore) -> (logits, mean cross-entropy in fp32).
        document_ids (B, T): block-causal attention within documents (training on packed windows).
        fused_loss with targets: (None, loss) through linear_cross_entropy, never building (B, T, V).
        target_weights (B, T): each target's loss weight (weighted_cross_entropy); None = all 1."""
        B, T = tokens.shape
        last_only = last_only or last_logits_only
        if start_pos + T > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence of {start_pos + T} tokens exceeds ModelConfig.max_seq_len {self.cfg.max_seq_len}"
            )
        if kv_cache is not None and start_pos + T > kv_cache[0].max_len:
            raise ValueError(f"{start_pos + T} positions do not fit the KV cache of {kv_cache[0].max_len}")
        mask = None
        if document_ids is not None:
            if kv_cache is not None:
                raise ValueError("document_ids (block-causal training attention) cannot be combined with a KV cache")
            if document_ids.shape != tokens.shape:
                raise ValueError(f"document_ids has shape {tuple(document_ids.shape)}, tokens {tuple(tokens.shape)}")
            if (document_ids.device.type == "cpu" and not torch.compiler.is_compiling()
                    and bool((document_ids == document_ids[:, :1]).all())):
                # Every window holds one document: block-causal is plain causal, and SDPA's is_causal
                # path skips the dense (B, 1, T, T) mask (checked on CPU only: on a GPU the check would
                # cost a host sync per forward; under compile the graph stays static).
                mask = None
            elif self.attention_impl == "flex":
                mask = flex_block_causal_mask(document_ids)
            else:
                mask = block_causal_mask(document_ids)  # (B, 1, T, T)
        h = self.tok_embeddings(tokens)  # (B, T, D) fp32: the residual stream stays fp32 under autocast
        # RoPE in the matmul dtype: under bf16 autocast q and k come out of the projections in bf16, and
        # fp32 tables would promote them (and SDPA's inputs) to fp32 for nothing.
        rope_dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
        cos = self.rope_cos[None, start_pos : start_pos + T, None, :].to(rope_dtype)  # (1, T, 1, Hd)
        sin = self.rope_sin[None, start_pos : start_pos + T, None, :].to(rope_dtype)  # (1, T, 1, Hd)
        kernel = self.attention_kernel(B, T, h.device, rope_dtype, kv_cache is not None)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, None if kv_cache is None else kv_cache[i], start_pos, mask, kernel)
        if last_only:
            h = h[:, -1:, :]  # (B, 1, D)
        if fused_loss and targets is not None and not last_only:
            return None, linear_cross_entropy(self.norm(h), self.output.weight, targets, target_weights)
        logits = self.output(self.norm(h))  # (B, T|1, V)
        if targets is None:
            return logits
        if last_only:
            raise ValueError("targets need logits at every position; do not pass last_only=True with targets")
        return logits, weighted_cross_entropy(logits, targets, target_weights)
