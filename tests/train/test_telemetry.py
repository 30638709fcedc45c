"""Run reporting: FLOPs per token, the measured matmul peak, NaN and spike detection, TensorBoard events."""

import json
import math

import pytest
import torch

from lightcoder.model.config import get_preset, num_params
from lightcoder.train.telemetry import LossWatch, MetricsLog, flops_per_token, measure_matmul_peak


def test_flops_per_token_follows_the_palm_formula():
    cfg = get_preset("aixcoder-7b")
    expected = 6 * (num_params(cfg) + cfg.vocab_size * cfg.dim) + 12 * cfg.n_layers * cfg.dim * 4096
    assert flops_per_token(cfg, 4096) == expected
    assert 4.5e10 < expected < 5.0e10  # ~6 x 7.2B + attention: the usual ~48 GFLOP/token at 4k


def test_matmul_peak_is_measured_on_this_machine():
    peak = measure_matmul_peak(torch.device("cpu"), torch.float32, size=128, seconds=0.05)
    assert 1e8 < peak < 1e14


def test_nan_loss_stops_with_the_first_bad_step():
    watch = LossWatch(torch.device("cpu"), spike_factor=3.0)
    for step, loss in enumerate([2.0, 1.9, float("nan"), 1.8, float("inf")], start=1):
        watch.observe(step, torch.tensor(loss))
    with pytest.raises(FloatingPointError, match="at step 3"):
        watch.check(1.5)


def test_spikes_are_reported_with_their_step():
    watch = LossWatch(torch.device("cpu"), spike_factor=2.0)
    for step in range(1, 5):
        watch.observe(step, torch.tensor(2.0))
    assert watch.check(2.0) is None  # the first interval only starts the running mean
    for step, loss in [(5, 2.1), (6, 9.5), (7, 2.0)]:
        watch.observe(step, torch.tensor(loss))
    spike = watch.check(4.5)
    assert spike == {"step": 6, "event": "loss_spike", "spike_loss": 9.5, "loss_ema": 2.0}
    watch.observe(8, torch.tensor(2.2))
    assert watch.check(2.2) is None  # the interval maximum was reset


def test_metrics_go_to_jsonl_and_tensorboard(tmp_path):
    with MetricsLog(tmp_path, enabled=True, tensorboard=True) as log:
        log.log({"step": 1, "loss": 3.5, "tokens": 10})
        log.log({"step": 2, "val_loss": 3.0})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "loss": 3.5, "tokens": 10}, {"step": 2, "val_loss": 3.0}]
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train/loss")] == [3.5]
    assert math.isclose(acc.Scalars("valid/loss")[0].value, 3.0)


def test_other_ranks_write_nothing(tmp_path):
    with MetricsLog(tmp_path, enabled=False, tensorboard=True) as log:
        log.log({"step": 1, "loss": 1.0})
    assert list(tmp_path.iterdir()) == []
