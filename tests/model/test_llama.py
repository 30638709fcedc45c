"""The model: presets and parameter counts, RoPE math, KV-cache decoding, last_only, loss, init."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightcoder.model.config import PRESETS, ModelConfig, get_preset, num_params
from lightcoder.model.llama import Transformer, apply_rope, precompute_rope


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    model = Transformer(get_preset("lc-tiny", **overrides))
    model.init_weights(seed)
    return model.eval()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_on_meta_and_counts_match(name):
    cfg = get_preset(name)
    with torch.device("meta"):
        model = Transformer(cfg)
    total = sum(p.numel() for p in model.parameters())
    assert total == num_params(cfg, non_embedding=False)
    assert total - 2 * cfg.vocab_size * cfg.dim == num_params(cfg)
    assert {n for n, _ in model.named_parameters()} >= {
        "tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.0.feed_forward.w2.weight",
        "layers.0.attention_norm.weight", "layers.0.ffn_norm.weight", "norm.weight", "output.weight",
    }


def test_aixcoder_7b_shape_matches_the_published_size():
    cfg = get_preset("aixcoder-7b")
    assert (cfg.head_dim, cfg.n_heads // cfg.n_kv_heads) == (128, 4)
    assert round(num_params(cfg) / 1e9, 2) == 7.03  # non-embedding
    assert round(num_params(cfg, non_embedding=False) / 1e9, 2) == 7.43


def test_quickstart_and_tiny_sizes():
    assert 1e6 <= num_params(get_preset("lc-quickstart")) <= 2e6
    assert 0.05e6 <= num_params(get_preset("lc-tiny")) <= 0.2e6


@pytest.mark.parametrize("bad", [
    {"dim": 65}, {"n_kv_heads": 3}, {"n_layers": 0}, {"rope_theta": 0.0}, {"dim": 72, "n_heads": 8},
])
def test_config_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="ModelConfig"):
        get_preset("lc-tiny", **bad)


def test_get_preset_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("gpt-5")
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        get_preset("lc-tiny", hidden=3)


def test_rope_is_relative():
    # <R_m q, R_n k> depends only on m - n.
    cos, sin = precompute_rope(16, 64, 256000.0)
    q, k = torch.randn(16), torch.randn(16)

    def rotated(x, pos):
        return apply_rope(x.view(1, 1, 1, 16), cos[None, pos : pos + 1, None], sin[None, pos : pos + 1, None]).view(16)

    near, far = torch.dot(rotated(q, 10), rotated(k, 3)), torch.dot(rotated(q, 40), rotated(k, 33))
    assert near.item() == pytest.approx(far.item(), abs=1e-5)
    assert rotated(q, 7).norm() == pytest.approx(q.norm().item(), rel=1e-5)


def test_kv_cache_decoding_matches_full_forward():
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 40))
    with torch.no_grad():
        full = model(tokens)  # (2, 40, V)
        cache = model.init_kv_cache(2, 48)
        parts = [model(tokens[:, :20], kv_cache=cache), model(tokens[:, 20:30], kv_cache=cache, start_pos=20)]
        parts += [model(tokens[:, i : i + 1], kv_cache=cache, start_pos=i) for i in range(30, 40)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_last_only_matches_the_last_position():
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 17))
    with torch.no_grad():
        last = model(tokens, last_only=True)
        full = model(tokens)
    assert last.shape == (3, 1, model.cfg.vocab_size)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-6, rtol=1e-6)


def test_loss_is_fp32_cross_entropy_with_ignore_index():
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 12))
    targets = torch.randint(0, model.cfg.vocab_size, (2, 12))
    targets[0, :5] = -100
    logits, loss = model(tokens, targets)
    expected = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # An untrained model is close to uniform.
    assert loss.item() == pytest.approx(math.log(model.cfg.vocab_size), rel=0.05)


def test_a_few_steps_overfit_one_batch():
    torch.manual_seed(0)
    model = tiny_model().train()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sequences_longer_than_max_seq_len_are_refused():
    model = tiny_model(max_seq_len=16)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_init_is_seeded_and_meta_build_gives_the_same_model():
    a, b, c = tiny_model(0), tiny_model(0), tiny_model(1)
    with torch.device("meta"):
        d = Transformer(get_preset("lc-tiny"))
    d.to_empty(device="cpu")
    d.init_weights(0)
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]) and torch.equal(p, d.state_dict()[name])
    assert not torch.equal(a.output.weight, c.output.weight)
    torch.testing.assert_close(d.rope_cos, a.rope_cos)  # buffers rebuilt after to_empty
    # Residual projections get the scaled std, norms start at one.
    assert a.layers[0].attention.wo.weight.std().item() < 0.6 * a.layers[0].attention.wq.weight.std().item()
    assert torch.equal(a.norm.weight, torch.ones(a.cfg.dim))


def test_default_config_is_the_quickstart_shape():
    assert ModelConfig() == get_preset("lc-quickstart")


def test_last_logits_only_is_an_alias_of_last_only():
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(tokens, last_logits_only=True), model(tokens, last_only=True))


def test_document_ids_count_bos_tokens():
    from lightcoder.model.llama import document_ids_from_tokens

    tokens = torch.tensor([[7, 1, 5, 6, 1, 9], [1, 4, 4, 4, 4, 4]])
    assert document_ids_from_tokens(tokens).tolist() == [[0, 1, 1, 1, 2, 2], [1, 1, 1, 1, 1, 1]]


@pytest.mark.parametrize("seed", range(5))
def test_block_causal_attention_equals_running_each_document_alone(seed):
    # Packed documents must not see each other: the logits of a document inside a packed row equal
    # the logits of that document run on its own from position 0 (RoPE is relative, so the shifted
    # start leaves the attention scores unchanged).
    from lightcoder.model.llama import document_ids_from_tokens

    gen = torch.Generator().manual_seed(seed)
    model = tiny_model(seed)
    lengths = torch.randint(2, 12, (4,), generator=gen).tolist()
    docs = [torch.cat([torch.tensor([1]), torch.randint(3, model.cfg.vocab_size, (n,), generator=gen)]) for n in lengths]
    tail = torch.randint(3, model.cfg.vocab_size, (3,), generator=gen)  # a document cut by the window start
    packed = torch.cat([tail, *docs])[None]  # (1, T)
    with torch.no_grad():
        logits = model(packed, document_ids=document_ids_from_tokens(packed))[0]
        start = 0
        for piece in [tail, *docs]:
            alone = model(piece[None])[0]
            torch.testing.assert_close(logits[start:start + len(piece)], alone, atol=2e-5, rtol=1e-4)
            start += len(piece)
        plain = model(packed)[0]
    assert not torch.allclose(plain[len(tail) + len(docs[0]):], logits[len(tail) + len(docs[0]):], atol=1e-3)


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_loss_matches_logits_loss_and_gradients(autocast):
    model = tiny_model().train()
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 20))
    targets = torch.randint(0, model.cfg.vocab_size, (3, 20))
    targets[1, :4] = -100
    results = []
    for fused in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits, loss = model(tokens, targets, fused_loss=fused)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}, logits))
    (ref_loss, ref_grads, ref_logits), (loss, grads, logits) = results
    assert logits is None and ref_logits is not None
    tol = 2e-2 if autocast else 1e-5
    assert loss == pytest.approx(ref_loss, rel=1e-3 if autocast else 1e-6)
    for name, grad in grads.items():
        assert grad.dtype == torch.float32
        scale = ref_grads[name].abs().max().item()
        assert (grad - ref_grads[name]).abs().max().item() <= tol * scale + 1e-9, name


def test_fused_loss_over_mostly_ignored_targets_matches_the_plain_loss():
    """Context-level FIM leaves prompts without a loss: the fused path computes the head on the other rows
    only, so rows without a target get no gradient and the mean is over the rows that have one."""
    model = tiny_model().train()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 24))
    targets = torch.randint(0, model.cfg.vocab_size, (2, 24))
    targets[0, :20] = -100  # a long prompt, then a short middle
    targets[1, 5:15] = -100
    results = []
    for fused in (False, True):
        model.zero_grad()
        _, loss = model(tokens, targets, fused_loss=fused)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (ref_loss, ref_grads), (loss, grads) = results
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max().item()
        assert (grad - ref_grads[name]).abs().max().item() <= 1e-5 * scale + 1e-9, name
    model.zero_grad()
    _, loss = model(tokens, torch.full_like(targets, -100), fused_loss=True)  # no target at all
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_weighted_loss_fused_equals_plain_and_matches_a_weighted_mean():
    """Weights scale each target's loss and gradient in both paths; the mean divides by valid targets."""
    model = tiny_model().train()
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 20))
    targets = torch.randint(0, model.cfg.vocab_size, (3, 20))
    targets[1, :4] = -100
    weights = torch.where(targets % 3 == 0, 4.0, 1.0)  # (3, 20): some targets weigh 4
    results = []
    for fused in (False, True):
        model.zero_grad()
        _, loss = model(tokens, targets, fused_loss=fused, target_weights=weights)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (ref_loss, ref_grads), (loss, grads) = results
    with torch.no_grad():
        rows = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten(), reduction="none",
                                                 ignore_index=-100)
    valid = targets.flatten() != -100
    expected = (rows * weights.flatten())[valid].sum() / valid.sum()
    assert ref_loss == pytest.approx(expected.item(), rel=1e-5)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert loss > model(tokens, targets)[1].item()  # weights above 1 on some targets raise the mean
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max().item()
        assert (grad - ref_grads[name]).abs().max().item() <= 1e-5 * scale + 1e-9, name


def test_unit_weights_give_the_unweighted_loss():
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 16))
    ones = torch.ones(2, 16)
    with torch.no_grad():
        for fused in (False, True):
            weighted = model(tokens, tokens, fused_loss=fused, target_weights=ones)[1].item()
            assert weighted == pytest.approx(model(tokens, tokens, fused_loss=fused)[1].item(), rel=1e-6)


def test_fused_loss_without_grad_gives_the_same_loss():
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 16))
    with torch.no_grad():
        assert model(tokens, tokens, fused_loss=True)[1].item() == pytest.approx(model(tokens, tokens)[1].item(), rel=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")  # flex_attention warns that eager mode is for debugging
def test_flex_attention_document_mask_matches_the_dense_mask():
    # FlexAttention runs eagerly on CPU, forward only (its backward needs CUDA: tests/train/test_cuda.py).
    from lightcoder.model.llama import document_ids_from_tokens

    model = tiny_model()
    tokens = torch.randint(3, model.cfg.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    tokens[0, [5, 20, 33]] = 1
    tokens[1, [0, 40]] = 1
    doc = document_ids_from_tokens(tokens)
    outputs = {}
    with torch.no_grad():
        for impl in ("sdpa", "flex"):
            model.attention_impl = impl
            outputs[impl] = model(tokens, document_ids=doc)
    torch.testing.assert_close(outputs["flex"], outputs["sdpa"], atol=1e-5, rtol=1e-5)


def test_windows_of_one_document_take_the_causal_path_with_the_same_logits():
    # Rows that hold one document each skip the dense mask (is_causal); the logits must equal those
    # of the dense block-causal path, forced here by a third row that holds two documents.
    gen = torch.Generator().manual_seed(0)
    model = tiny_model(0)
    tokens = torch.randint(3, model.cfg.vocab_size, (3, 16), generator=gen)  # (B, T)
    single = torch.tensor([[0] * 16, [1] * 16])  # one document per row (ids 0 and 1)
    mixed = torch.cat([single, torch.tensor([[1] * 6 + [2] * 10])])  # row 2: two documents
    with torch.no_grad():
        causal_path = model(tokens[:2], document_ids=single)
        dense_path = model(tokens, document_ids=mixed)[:2]
    torch.testing.assert_close(causal_path, dense_path, atol=2e-5, rtol=1e-4)
