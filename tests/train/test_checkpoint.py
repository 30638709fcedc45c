"""train/checkpoint.py without training: an empty or truncated train_state.pt is a clear CheckpointError."""

import pytest
import torch

from lightcoder.model.hf import CheckpointError
from lightcoder.train.checkpoint import STATE_FILE, STATE_VERSION, complete_checkpoints, load_train_state


def make_ckpt(ckpt_dir, step: int, data: bytes | None = None):
    path = ckpt_dir / f"step_{step:06d}"
    path.mkdir(parents=True)
    if data is None:
        torch.save({"version": STATE_VERSION, "step": step}, path / STATE_FILE)
    else:
        (path / STATE_FILE).write_bytes(data)
    return path


@pytest.mark.parametrize("data, reason", [
    (b"", r"is empty \(0 bytes\)"),
    (b"PK\x03\x04trunc", "is truncated or corrupt"),
])
def test_empty_or_truncated_state_names_the_checkpoint(tmp_path, data, reason):
    make_ckpt(tmp_path, 0)
    bad = make_ckpt(tmp_path, 5, data)
    assert [step for step, _ in complete_checkpoints(tmp_path)] == [0, 5]  # still listed: no silent fallback
    expected = rf"step_000005 cannot be loaded \({STATE_FILE} {reason}.*resume from step_000000"
    with pytest.raises(CheckpointError, match=expected):
        load_train_state(bad)
    assert load_train_state(tmp_path / "step_000000")["step"] == 0


def test_a_crash_during_a_save_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    from lightcoder.model.config import get_preset
    from lightcoder.model.llama import Transformer
    from lightcoder.train import checkpoint as ckpt
    from lightcoder.train.config import TrainConfig
    from lightcoder.train.optim import build_optimizer

    cfg = get_preset("lc-tiny", n_layers=1)
    model = Transformer(cfg)
    model.init_weights(0)
    optimizer = build_optimizer(model, TrainConfig())
    state = {"step": 1, "tokens": 10, "rng": None}
    ckpt.save_train_checkpoint(tmp_path, 1, model, optimizer, cfg, state)
    good = {k: v.clone() for k, v in model.state_dict().items()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with torch.no_grad():
        model.output.weight.add_(1.0)
    monkeypatch.setattr(ckpt, "write_model_files", crash)
    for step in (1, 2):  # overwriting the same step, or writing the next one
        with pytest.raises(OSError, match="disk full"):
            ckpt.save_train_checkpoint(tmp_path, step, model, optimizer, cfg, {**state, "step": step})
    assert [step for step, _ in complete_checkpoints(tmp_path)] == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no tmp dirs left behind
    fresh = Transformer(cfg)
    restored = ckpt.load_train_checkpoint(tmp_path / "step_000001", fresh, build_optimizer(fresh, TrainConfig()))
    assert restored["step"] == 1
    for name, value in good.items():
        assert torch.equal(fresh.state_dict()[name], value), name


def test_the_step_zero_save_leaves_the_optimizer_at_step_zero(tmp_path):
    """Saving before the first step must not count a step: AdamW's first update keeps its full size."""
    from lightcoder.model.config import get_preset
    from lightcoder.model.llama import Transformer
    from lightcoder.train import checkpoint as ckpt
    from lightcoder.train.config import TrainConfig
    from lightcoder.train.optim import build_optimizer

    cfg = get_preset("lc-tiny", n_layers=1)
    model = Transformer(cfg)
    model.init_weights(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, TrainConfig())
    ckpt.save_train_checkpoint(tmp_path, 0, model, optimizer, cfg, {"step": 0, "tokens": 0, "rng": None})
    steps = {float(state["step"]) for state in optimizer.state.values() if "step" in state}
    assert steps == {0.0} and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    loaded = build_optimizer(model, TrainConfig())
    ckpt.load_train_checkpoint(tmp_path / "step_000000", model, loaded)
    assert {float(state["step"]) for state in loaded.state.values() if "step" in state} == {0.0}
