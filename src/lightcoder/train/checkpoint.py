"""Training checkpoints: an HF-loadable model dir plus `train_state.pt`, written atomically.

Layout: `RUN/ckpt/step_{step:06d}/` = what `lightcoder.model.hf.save_checkpoint` writes (config.json,
model.safetensors, generation_config.json, lightcoder.json, tokenizer files) + `train_state.pt` (optimizer,
step, tokens, loader position, LR plan, RNG states, the train and model configs). Everything is written
into a hidden tmp dir first, `train_state.pt` last, and the dir is then renamed into place, so a
`step_*` directory is complete exactly when it contains `train_state.pt`.

Resuming picks the newest complete checkpoint. If that one cannot be read, the run stops with a
`CheckpointError` naming it, rather than silently falling back to an older one and discarding progress;
deleting the bad directory resumes from the previous checkpoint.
"""

from __future__ import annotations

import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from lightcoder.model.hf import CheckpointError, load_checkpoint, save_checkpoint

STATE_FILE = "train_state.pt"
STATE_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def step_dir(ckpt_dir: str | Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:06d}"


def complete_checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, dir) of every complete checkpoint under ckpt_dir, oldest first.

    Complete means train_state.pt exists; one that exists but is empty or truncated is still listed,
    so resuming stops with load_train_state's CheckpointError naming it instead of silently falling
    back to an older checkpoint.
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for path in ckpt_dir.iterdir():
        match = _STEP_DIR.match(path.name)
        if match is None or not path.is_dir():
            continue
        if not (path / STATE_FILE).is_file():
            warnings.warn(f"ignoring {path}: no {STATE_FILE} (not written by lightcoder train, or truncated)",
                          stacklevel=2)
            continue
        found.append((int(match.group(1)), path))
    return sorted(found)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_checkpoint(ckpt_dir: str | Path, step: int, model: torch.nn.Module, model_cfg,
                          train_state: dict, *, tokenizer_dir: str | Path | None = None) -> Path:
    """Write ckpt_dir/step_{step:06d} (model + train_state.pt) atomically; replaces an existing one."""

    def write_state(tmp: Path) -> None:  # runs inside the tmp dir, before it is renamed into place
        torch.save({"version": STATE_VERSION, **train_state}, tmp / STATE_FILE)

    return save_checkpoint(model, model_cfg, step_dir(ckpt_dir, step), tokenizer_dir=tokenizer_dir,
                           extra={"step": step, "tokens": int(train_state.get("tokens", 0))},
                           before_commit=write_state)


def load_train_state(path: str | Path) -> dict:
    """train_state.pt of checkpoint dir `path`; CheckpointError naming the dir when unreadable."""
    path = Path(path)
    file = path / STATE_FILE
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise CheckpointError(_corrupt_message(path, f"{STATE_FILE} cannot be read: {exc}")) from None
    if size == 0:  # a save cut short (e.g. power loss before the data reached the disk)
        raise CheckpointError(_corrupt_message(path, f"{STATE_FILE} is empty (0 bytes)"))
    try:
        # Our own file: it holds numpy/python RNG states, which weights_only=True refuses.
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise CheckpointError(_corrupt_message(path, f"{STATE_FILE} is truncated or corrupt: {exc}")) from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(_corrupt_message(path, f"unexpected {STATE_FILE} format"))
    return state


def load_model_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Copy the checkpoint's weights into `model` (same config; fp32 values are restored exactly)."""
    path = Path(path)
    try:
        loaded, _ = load_checkpoint(path, device="cpu")
        state = loaded.state_dict()
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(_corrupt_message(path, exc)) from exc
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if name not in state or state[name].shape != param.shape:
                raise CheckpointError(_corrupt_message(path, f"weight {name} missing or of another shape"))
            param.copy_(state[name])


def prune_checkpoints(ckpt_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints; step_000000 is always kept."""
    removable = [path for step, path in complete_checkpoints(ckpt_dir) if step != 0]
    doomed = removable[:-keep] if keep > 0 else removable
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def _corrupt_message(path: Path, reason) -> str:
    previous = [p for _, p in complete_checkpoints(path.parent) if p != path]
    fallback = (f"delete it to resume from {previous[-1].name}" if previous
                else "delete it (or the whole ckpt dir) to start over")
    return f"checkpoint {path} cannot be loaded ({reason}); {fallback}"
