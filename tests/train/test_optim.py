"""TrainConfig validation, the warmup + cosine / wsd schedules, and the AdamW parameter groups."""

import math

import pytest
import torch

from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer
from lightcoder.train.config import TrainConfig
from lightcoder.train.optim import build_optimizer, lr_at, param_groups, set_lr


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="cosine")
    total = 110
    lrs = [lr_at(step, cfg, total) for step in range(total + 5)]
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear, reaching lr at step 9
    assert lrs[10] == pytest.approx(1.0)
    decay = lrs[10:total]
    assert all(a >= b for a, b in zip(decay, decay[1:]))  # monotone
    assert lrs[59] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 49 / 99)))
    assert lrs[total - 1] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1)  # floor, then held


def test_wsd_holds_the_peak_then_decays_linearly_over_the_last_fraction():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, decay_fraction=0.2)
    total = 110
    lrs = [lr_at(step, cfg, total) for step in range(total + 5)]
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10:90] == [1.0] * 80  # stable: 80 % of the 100 steps after warmup
    assert lrs[99] == pytest.approx(1.0 - 0.9 * 9 / 19) and lrs[109] == pytest.approx(0.1) == lrs[-1]
    # a decay start fixed from the clock (train/budget.py) overrides the fraction
    assert lr_at(60, cfg, total, decay_start=60) == 1.0 and lr_at(84, cfg, total, decay_start=60) == pytest.approx(
        1.0 - 0.9 * 24 / 49)


def test_schedule_edge_cases():
    cfg = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0)
    assert lr_at(0, cfg, 100) == pytest.approx(1.0)  # no warmup: start at the peak
    assert lr_at(500, cfg, None) == 1.0  # total not planned yet: hold the peak after warmup
    assert lr_at(0, cfg, 1) == 1.0  # a one-step run
    short = TrainConfig(lr=1.0, min_lr=0.5, warmup_steps=20)
    assert lr_at(25, short, 10) == 0.5  # schedule shorter than the warmup: min_lr after it


def test_norms_and_embeddings_get_no_weight_decay():
    model = Transformer(get_preset("lc-tiny"))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in no_decay["params"]} == {
        n for n, _ in model.named_parameters() if "norm" in n or "tok_embeddings" in n}
    assert "output.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_fused_adamw_steps_and_takes_the_scheduled_lr():
    model = Transformer(get_preset("lc-tiny"))
    model.init_weights(0)
    cfg = TrainConfig()
    optimizer = build_optimizer(model, cfg)
    before = model.output.weight.detach().clone()
    tokens = torch.randint(0, 512, (2, 9))
    _, loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    set_lr(optimizer, 1e-2)
    optimizer.step()
    assert all(group["lr"] == 1e-2 for group in optimizer.param_groups)
    assert not torch.equal(before, model.output.weight)


@pytest.mark.parametrize("overrides, field", [
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 1e-4, "min_lr": 1e-3}, "min_lr"),
    ({"dtype": "fp16"}, "dtype"),
    ({"device": "tpu"}, "device"),
    ({"max_minutes": -1}, "max_minutes"),
    ({"betas": (0.9, 1.5)}, "betas"),
    ({"keep_checkpoints": 0}, "keep_checkpoints"),
])
def test_config_rejects_bad_values_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"train.{field}"):
        TrainConfig(**overrides)


def test_config_round_trips_through_a_dict():
    cfg = TrainConfig(batch_size=4, betas=[0.9, 0.99])
    assert cfg.betas == (0.9, 0.99)
    assert TrainConfig(**cfg.to_dict()) == cfg
