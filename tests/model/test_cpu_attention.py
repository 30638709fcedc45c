"""The CPU block-causal attention kernel: gradcheck, parity with SDPA (fp32 and bf16), the model's kernel
choice, and that training with it follows the same trajectory as with SDPA."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightcoder.model import llama
from lightcoder.model.config import get_preset
from lightcoder.model.cpu_attention import block_causal_attention, fits_block_causal
from lightcoder.model.llama import Transformer, block_causal_mask, document_ids_from_tokens
from lightcoder.train.config import TrainConfig
from lightcoder.train.loop import optimizer_step
from lightcoder.train.optim import build_optimizer


def random_document_ids(batch: int, seq_len: int, gen: torch.Generator, max_docs: int = 4) -> torch.Tensor:
    """(B, T) non-decreasing document ids, each window cut into up to `max_docs` documents at random."""
    starts = torch.rand(batch, seq_len, generator=gen) < (max_docs - 1) / seq_len  # (B, T) document starts
    starts[:, 0] = False
    return torch.cumsum(starts, dim=-1, dtype=torch.int32)


def qkv(batch, heads, kv_heads, seq_len, head_dim, gen, dtype=torch.float32, transposed=False):
    """Random q (B, H, T, Hd), k, v (B, K, T, Hd); transposed: as the model passes them, (B, H, T, Hd)
    views of (B, T, H, Hd) tensors (non-contiguous)."""
    def one(h):
        if transposed:
            return torch.randn(batch, seq_len, h, head_dim, generator=gen, dtype=dtype).transpose(1, 2)
        return torch.randn(batch, h, seq_len, head_dim, generator=gen, dtype=dtype)
    return one(heads), one(kv_heads), one(kv_heads)


def output_and_grads(attend, q, k, v, grad_out):
    """attend(q, k, v) and the gradients of <output, grad_out> w.r.t. q, k, v, all as fp32."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = attend(q, k, v)
    out.backward(grad_out)
    return [t.float() for t in (out, q.grad, k.grad, v.grad)]


def sdpa(keep):
    return lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=keep is None, attn_mask=keep, enable_gqa=True)


# ---------------------------------------------------------------------------------------------
# The kernel alone


@pytest.mark.parametrize("seq_len,block", [(2, 4), (3, 4), (4, 4), (7, 3), (10, 4), (11, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_float64(seq_len, block, masked):
    # GQA H=4 over K=2; T=2, T < block, T == block, and T not a multiple of the block (several blocks).
    gen = torch.Generator().manual_seed(seq_len * 10 + block)
    q, k, v = (t.requires_grad_() for t in qkv(2, 4, 2, seq_len, 3, gen, dtype=torch.float64))
    keep = block_causal_mask(random_document_ids(2, seq_len, gen, max_docs=3)) if masked else None
    if masked:  # the mask really cuts documents, else this is the causal case again
        assert not torch.equal(keep, torch.ones(seq_len, seq_len, dtype=torch.bool).tril().expand_as(keep))
    assert torch.autograd.gradcheck(lambda q, k, v: block_causal_attention(q, k, v, keep, block=block), (q, k, v))


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_fp32_matches_sdpa_over_random_shapes(transposed, masked):
    gen = torch.Generator().manual_seed(int(transposed) * 2 + int(masked))
    for trial in range(12):
        batch = int(torch.randint(1, 4, (), generator=gen))
        kv_heads = int(torch.randint(1, 4, (), generator=gen))
        heads = kv_heads * int(torch.randint(1, 4, (), generator=gen))  # GQA groups of 1..3
        seq_len = int(torch.randint(2, 150, (), generator=gen))
        head_dim = [8, 16, 32][trial % 3]
        block = [16, 33, 64][trial % 3]
        q, k, v = qkv(batch, heads, kv_heads, seq_len, head_dim, gen, transposed=transposed)
        grad_out = torch.randn(batch, heads, seq_len, head_dim, generator=gen)
        keep = block_causal_mask(random_document_ids(batch, seq_len, gen)) if masked else None
        ours = output_and_grads(lambda q, k, v: block_causal_attention(q, k, v, keep, block=block), q, k, v, grad_out)
        reference = output_and_grads(sdpa(keep), q, k, v, grad_out)
        shape = (batch, heads, kv_heads, seq_len, head_dim, block)
        for name, got, want in zip(("out", "grad_q", "grad_k", "grad_v"), ours, reference):
            assert got.shape == want.shape, (name, shape)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name} {shape}: {m}")


@pytest.mark.parametrize("batch,seq_len,masked", [(2, 256, False), (4, 511, False), (3, 300, True)])
def test_bf16_error_is_of_the_order_of_sdpa_bf16(batch, seq_len, masked):
    # Scores and probabilities are rounded to bf16 (as in HF's eager attention); SDPA keeps them in fp32
    # inside its kernel. Both against the fp32 reference: our error must stay within 3x of SDPA's.
    heads, kv_heads, head_dim = 8, 4, 32
    gen = torch.Generator().manual_seed(seq_len)
    q, k, v = qkv(batch, heads, kv_heads, seq_len, head_dim, gen, transposed=True)
    grad_out = torch.randn(batch, heads, seq_len, head_dim, generator=gen)
    keep = block_causal_mask(random_document_ids(batch, seq_len, gen)) if masked else None
    exact = output_and_grads(sdpa(keep), q, k, v, grad_out)
    low = [t.bfloat16() for t in (q, k, v, grad_out)]
    ours = output_and_grads(lambda q, k, v: block_causal_attention(q, k, v, keep), *low)
    theirs = output_and_grads(sdpa(keep), *low)
    for name, got, sdpa_bf16, want in zip(("out", "grad_q", "grad_k", "grad_v"), ours, theirs, exact):
        our_error = ((got - want).norm() / want.norm()).item()
        sdpa_error = ((sdpa_bf16 - want).norm() / want.norm()).item()
        assert 0 < sdpa_error < 0.02, (name, sdpa_error)  # bf16 rounding really happened, and is small
        assert our_error <= 3 * sdpa_error, (name, our_error, sdpa_error)


def test_bf16_outputs_and_grads_keep_the_input_dtype():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (t.bfloat16().requires_grad_() for t in qkv(1, 4, 2, 70, 16, gen))
    out = block_causal_attention(q, k, v, block=32)
    out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16
    assert (q.grad.dtype, k.grad.dtype, v.grad.dtype) == (torch.bfloat16,) * 3


def test_fp32_inputs_under_autocast_compute_in_bf16_and_backward_outside_it():
    # Like SDPA: under autocast the kernel runs in the autocast dtype whatever q, k, v arrive in, and the
    # backward (run after leaving autocast, as optimizer_step does) hands fp32 grads to fp32 leaves.
    gen = torch.Generator().manual_seed(0)
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 2, 10, 8, gen))  # fp32 leaves
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block_causal_attention(q, k, v, block=4)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == ref.dtype == torch.bfloat16
    out.float().sum().backward()
    assert q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all()
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_first_query_sees_only_the_first_key_and_documents_do_not_leak():
    # Structural check independent of SDPA: changing a key/value changes no output before its position,
    # and with a document mask none outside its own document.
    gen = torch.Generator().manual_seed(1)
    q, k, v = qkv(1, 2, 1, 20, 8, gen)
    ids = torch.tensor([[0] * 7 + [1] * 8 + [2] * 5])  # documents [0, 7), [7, 15), [15, 20)
    keep = block_causal_mask(ids)
    for mask in (None, keep):
        base = block_causal_attention(q, k, v, mask, block=6)
        k2, v2 = k.clone(), v.clone()
        k2[:, :, 10] += 5.0  # position 10: in document 1
        v2[:, :, 10] += 5.0
        changed = (block_causal_attention(q, k2, v2, mask, block=6) - base).abs().amax(dim=(0, 1, 3)) > 0  # (T,)
        expected = torch.zeros(20, dtype=torch.bool)
        expected[10:] = True
        if mask is not None:
            expected[15:] = False  # document 2 does not see document 1
        assert torch.equal(changed, expected)
    torch.testing.assert_close(base[:, :, 0], v[:, :, 0].expand_as(base[:, :, 0]))


# ---------------------------------------------------------------------------------------------
# In the model


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    model = Transformer(get_preset("lc-tiny", **overrides))
    model.init_weights(seed)
    return model


def packed_tokens(batch: int, seq_len: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """(B, T) random tokens with `<s>` (id 1) at a few random positions: several documents per window."""
    tokens = torch.randint(2, vocab, (batch, seq_len), generator=gen)
    tokens[torch.rand(batch, seq_len, generator=gen) < 4 / seq_len] = 1
    tokens[0, seq_len // 2] = 1  # at least one window holds two documents
    return tokens


@pytest.mark.parametrize("with_documents", [False, True])
def test_model_blocks_matches_sdpa_in_fp32(with_documents, monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[3] is not None)  # whether a keep mask was passed
        return block_causal_attention(*args, **kwargs)

    monkeypatch.setattr(llama, "block_causal_attention", counting)
    gen = torch.Generator().manual_seed(int(with_documents))
    model = tiny_model()
    tokens = packed_tokens(3, 97, model.cfg.vocab_size, gen)  # 97: two blocks of 64, the second partial
    targets = torch.roll(tokens, -1, dims=1)
    document_ids = document_ids_from_tokens(tokens) if with_documents else None
    results = {}
    for impl in ("sdpa", "blocks"):
        model.attention_impl = impl
        model.zero_grad(set_to_none=True)
        logits, loss = model(tokens, targets, document_ids=document_ids)
        loss.backward()
        results[impl] = logits, loss, {n: p.grad.clone() for n, p in model.named_parameters()}
    assert calls == [with_documents] * model.cfg.n_layers  # "blocks" really ran the kernel, "sdpa" did not
    (logits_s, loss_s, grads_s), (logits_b, loss_b, grads_b) = results["sdpa"], results["blocks"]
    torch.testing.assert_close(logits_b, logits_s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_b, loss_s, atol=1e-6, rtol=1e-6)
    assert grads_b.keys() == grads_s.keys()
    for name in grads_s:
        torch.testing.assert_close(grads_b[name], grads_s[name], atol=1e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_fits_block_causal_budget():
    assert fits_block_causal(4, 8, 2048, torch.bfloat16)
    assert not fits_block_causal(4, 8, 4096, torch.bfloat16)
    # The budget is in bytes: fp32 probabilities take twice the room of bf16 ones.
    assert fits_block_causal(2, 8, 2048, torch.float32) and not fits_block_causal(4, 8, 2048, torch.float32)
    assert not fits_block_causal(1, 1, 1, torch.bfloat16)  # one token: nothing to gain


def test_attention_kernel_choice():
    with torch.device("meta"):
        model = Transformer(get_preset("lc-quickstart", max_seq_len=4096))  # 8 heads
    cpu, cuda, bf16 = torch.device("cpu"), torch.device("cuda"), torch.bfloat16
    model.attention_impl = "auto"
    assert model.attention_kernel(4, 2048, cpu, bf16, cached=False) == "blocks"
    assert model.attention_kernel(4, 4096, cpu, bf16, cached=False) == "sdpa"  # too long: saved probs too big
    assert model.attention_kernel(4, 2048, cpu, bf16, cached=True) == "sdpa"  # KV cache
    assert model.attention_kernel(4, 2048, cuda, bf16, cached=False) == "sdpa"  # not on CPU
    for impl in ("sdpa", "flex"):
        model.attention_impl = impl
        assert model.attention_kernel(4, 2048, cpu, bf16, cached=False) == "sdpa"
    model.attention_impl = "blocks"
    assert model.attention_kernel(4, 4096, cpu, bf16, cached=False) == "blocks"  # forced, any length
    assert model.attention_kernel(4, 2048, cpu, bf16, cached=True) == "sdpa"  # but never with a KV cache


def test_kv_cache_decoding_with_blocks_matches_full_forward():
    # "blocks" for the prefill-free full forward, SDPA inside cached decoding: the same logits.
    model = tiny_model().eval()
    model.attention_impl = "blocks"
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(tokens)
        cache = model.init_kv_cache(2, 32)
        parts = [model(tokens[:, :20], kv_cache=cache)]
        parts += [model(tokens[:, i : i + 1], kv_cache=cache, start_pos=i) for i in range(20, 30)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Training: bf16 scores do not change the trajectory


def markov_stream_batches(vocab: int, steps: int, batch: int, seq_len: int, seed: int = 0):
    """Batches (inputs, targets) of packed documents from a fixed random Markov chain: each token has 2
    equally likely successors (entropy ~log 2 nats vs log(vocab) for an untrained model); about one token
    in 40 is `<s>` (id 1), which starts a new document at a random token."""
    gen = torch.Generator().manual_seed(seed)
    successors = torch.randint(2, vocab, (vocab, 2), generator=gen)  # (V, 2)
    batches = []
    for _ in range(steps):
        window = torch.empty(batch, seq_len + 1, dtype=torch.long)  # (B, T + 1)
        window[:, 0] = torch.randint(2, vocab, (batch,), generator=gen)
        for t in range(seq_len):
            current = window[:, t]
            following = successors[current, torch.randint(0, 2, (batch,), generator=gen)]
            following = torch.where(torch.rand(batch, generator=gen) < 1 / 40, 1, following)
            restart = torch.randint(2, vocab, (batch,), generator=gen)
            window[:, t + 1] = torch.where(current == 1, restart, following)
        batches.append((window[:, :-1], window[:, 1:]))
    return batches


def test_bf16_training_trajectory_matches_sdpa():
    vocab, steps = 64, 36
    batches = markov_stream_batches(vocab, steps, batch=8, seq_len=160)  # 3 query blocks, the last partial
    assert sum(bool((x == 1).any()) for x, _ in batches) > steps // 2  # packed windows with several documents
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    losses = {}
    for impl in ("sdpa", "blocks"):
        model = tiny_model(vocab_size=vocab).train()
        model.attention_impl = impl
        optimizer = build_optimizer(model, TrainConfig())
        losses[impl] = [
            optimizer_step(model, optimizer, x, y, autocast=autocast, grad_clip=1.0, document_mask=True)[0].item()
            for x, y in batches
        ]
    for impl, curve in losses.items():
        assert curve[0] == pytest.approx(math.log(vocab), rel=0.1), impl  # starts near uniform
        assert sum(curve[-5:]) / 5 < 0.5 * math.log(vocab), (impl, curve[-5:])  # and learns the chain
    final = {impl: sum(curve[-5:]) / 5 for impl, curve in losses.items()}
    assert final["blocks"] == pytest.approx(final["sdpa"], rel=0.03), final
    # Step by step, too: the two runs stay close all along, not only at the end.
    for step, (a, b) in enumerate(zip(losses["blocks"], losses["sdpa"])):
        assert a == pytest.approx(b, rel=0.05), (step, a, b)
