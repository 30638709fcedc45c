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
