"""train.optimizer "muon": the Newton–Schulz orthogonalization, AdamW parity on the non-Muon groups, which
weights each rule gets, training end to end with exact resume, and clear errors for a wrong name or a resume
with the other optimizer (FSDP2 against one process: tests/train/test_distributed.py)."""

import pytest
import torch
from torch import nn

from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer
from lightcoder.train.config import TrainConfig
from lightcoder.train.muon import MuonAdamW, orthogonalize
from lightcoder.train.loop import ResumeMismatchError
from lightcoder.train.optim import build_optimizer

from test_train_loop import N, assert_same_weights, run, train_losses, write_shards  # this dir is on sys.path


@pytest.mark.parametrize("shape", [(192, 512), (512, 192), (96, 192), (64, 64)])
def test_orthogonalize_keeps_the_directions_and_maps_the_singular_values_near_one(shape):
    torch.manual_seed(0)
    scales = torch.logspace(2, -3, min(shape))  # singular values over five decades, largest first
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape)))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape)))
    matrix = u @ torch.diag(scales) @ v.T
    out = orthogonalize(matrix)
    assert out.shape == matrix.shape and out.dtype == matrix.dtype
    core = u.T @ out @ v  # out ~ U f(S) V^T: diagonal in the input's singular bases
    mapped = torch.diagonal(core)
    large = scales >= scales[0] / 100  # the singular values five Newton–Schulz steps lift
    lifted = core[large][:, large]
    assert (lifted - torch.diag(mapped[large])).abs().max() < 0.05  # bf16 rounding apart
    assert ((mapped[large] > 0.6) & (mapped[large] < 1.3)).all()
    assert (mapped > -0.1).all() and torch.linalg.svdvals(out).max() < 1.3  # never flipped, never blown up


def test_groups_without_muon_take_exactly_torch_adamw_steps():
    torch.manual_seed(0)
    ours, ref = nn.Linear(16, 8), nn.Linear(16, 8)
    ref.load_state_dict(ours.state_dict())
    opt = MuonAdamW([{"params": [ours.weight], "weight_decay": 0.1}, {"params": [ours.bias]}],
                    lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ref_opt = torch.optim.AdamW([{"params": [ref.weight], "weight_decay": 0.1},
                                 {"params": [ref.bias], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for _ in range(5):
        x = torch.randn(4, 16)
        for model, optimizer in ((ours, opt), (ref, ref_opt)):
            model(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        torch.testing.assert_close(ours.weight, ref.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.bias, ref.bias, rtol=1e-5, atol=1e-6)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = Transformer(get_preset("lc-tiny", n_layers=2, max_seq_len=64))
    opt = build_optimizer(model, TrainConfig(optimizer="muon"))
    names = {id(p): n for n, p in model.named_parameters()}
    by_rule = {True: set(), False: set()}
    for group in opt.param_groups:
        by_rule[group["muon"]].update(names[id(p)] for p in group["params"])
    assert by_rule[True] and by_rule[True] | by_rule[False] == set(names.values())
    assert all(n.startswith("layers.") and not n.endswith("norm.weight") for n in by_rule[True])
    assert {"tok_embeddings.weight", "output.weight", "norm.weight"} <= by_rule[False]
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] for p in g["params"]}
    assert "tok_embeddings.weight" not in decayed and "output.weight" in decayed


@pytest.mark.parametrize("dtype,expected", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_newton_schulz_runs_in_the_runs_dtype(dtype, expected):
    model = Transformer(get_preset("lc-tiny", n_layers=1, max_seq_len=64))
    assert build_optimizer(model, TrainConfig(optimizer="muon", dtype=dtype)).ns_dtype == expected
    matrix = torch.randn(8, 16)
    fp32, bf16 = orthogonalize(matrix, dtype=torch.float32), orthogonalize(matrix, dtype=torch.bfloat16)
    assert fp32.dtype == bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)
    torch.testing.assert_close(fp32, bf16, atol=0.05, rtol=0.05)


def test_a_muon_step_moves_each_matrix_by_an_orthogonal_update_at_adamw_scale():
    torch.manual_seed(0)
    layer = nn.Linear(192, 512, bias=False)
    before = layer.weight.detach().clone()
    opt = MuonAdamW([{"params": [layer.weight], "muon": True}], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    layer(torch.randn(1024, 192)).square().mean().backward()  # a full-rank gradient, (512, 192)
    opt.step()
    scale = 1e-2 * 0.2 * 512 ** 0.5  # lr x the RMS match to AdamW
    values = torch.linalg.svdvals((layer.weight.detach() - before) / scale)
    assert 0.6 < values.median() < 1.3 and values.max() < 1.3  # an orthogonal update, not the raw gradient
    rms = (layer.weight.detach() - before).square().mean().sqrt()
    assert 0.1e-2 < rms < 0.3e-2  # ~0.2 lr: the RMS of an AdamW step


def test_training_with_muon_lowers_the_loss_and_resumes_bit_for_bit(tmp_path):
    shards = write_shards(tmp_path / "shards")
    ref = run(tmp_path / "straight", shards, max_steps=N, optimizer="muon")
    assert ref["val_loss"] < ref["initial_val_loss"] - 1.0
    first = run(tmp_path / "resumed", shards, max_steps=5, optimizer="muon")
    second = run(tmp_path / "resumed", shards, max_steps=N, optimizer="muon")
    assert first["steps"] == 5 and second["resumed_from"] == 5
    assert_same_weights(tmp_path / "straight" / "ckpt" / f"step_{N:06d}", tmp_path / "resumed" / "ckpt" / f"step_{N:06d}")
    assert train_losses(tmp_path / "resumed", after=5) == train_losses(tmp_path / "straight", after=5)


def test_an_unknown_optimizer_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"train.optimizer must be one of \('adamw', 'muon'\), got 'sgd'"):
        TrainConfig(optimizer="sgd")


def test_resuming_with_another_optimizer_is_a_clear_error(tmp_path):
    shards = write_shards(tmp_path / "shards")
    run(tmp_path / "run", shards, max_steps=1, eval_every=0)  # AdamW
    with pytest.raises(ResumeMismatchError, match=r"train.optimizer 'adamw', not 'muon': resume it with "
                                                  r"--train.optimizer adamw"):
        run(tmp_path / "run", shards, max_steps=2, eval_every=0, optimizer="muon")
