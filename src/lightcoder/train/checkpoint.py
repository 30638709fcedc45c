"""Training checkpoints: sharded model + optimizer state (torch.distributed.checkpoint), an HF-loadable
export of the weights, and `train_state.pt`, written atomically by all ranks together.

Layout of `RUN/ckpt/step_{step:06d}/`:
- `dcp/`: model and optimizer state in torch.distributed.checkpoint format: every rank writes its own
  shards (`__<rank>_0.distcp`) plus global metadata, so a run resumes on any number of ranks (DCP
  reshards on load) and no rank ever holds the full optimizer state;
- what `lightcoder.model.hf.write_model_files` writes (config.json, model.safetensors, generation_config.json,
  lightcoder.json, tokenizer files): the full fp32 weights gathered on rank 0, loadable by
  `transformers.AutoModelForCausalLM` and by eval/serve (with `train.export_hf="final"` only step 0 and the
  last checkpoint carry them);
- `train_state.pt`: step, tokens, loader position, LR plan, every rank's RNG states, train and model configs.

Everything is written into the hidden `.step_N.tmp` dir first, `train_state.pt` last (by rank 0 after a
barrier), and the dir is then renamed into place, so a `step_*` directory is complete exactly when it
contains `train_state.pt`, and a crash during a save never touches the last good checkpoint.

Resuming picks the newest complete checkpoint. If that one cannot be read, the run stops with a
`CheckpointError` naming it, rather than silently falling back to an older one and discarding progress;
deleting the bad directory resumes from the previous checkpoint.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from lightcoder.artifacts import replace_dir
from lightcoder.model.hf import CheckpointError, load_checkpoint, write_model_files
from lightcoder.train.distributed import Dist, barrier, gather_objects

STATE_FILE = "train_state.pt"
DCP_DIR = "dcp"
STATE_VERSION = 2  # 1: single-process checkpoints with the optimizer inside train_state.pt (still loaded)
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
    for path in sorted(ckpt_dir.iterdir()):
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


def save_train_checkpoint(ckpt_dir: str | Path, step: int, model: torch.nn.Module, optimizer, model_cfg,
                          train_state: dict, *, env: Dist = Dist(), tokenizer_dir: str | Path | None = None,
                          export_hf: bool = True) -> Path:
    """Write ckpt_dir/step_{step:06d} atomically (see the module docstring); every rank must call it.

    Replaces an existing checkpoint of the same step. Returns the final dir.
    """
    from torch.distributed.checkpoint import save as dcp_save
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = step_dir(ckpt_dir, step)
    tmp = final.parent / f".{final.name}.tmp"  # one name that every rank agrees on
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(env)
    try:
        fresh = not optimizer.state
        model_sd, optim_sd = get_state_dict(model, optimizer)
        if fresh:  # get_state_dict filled the empty state with a zero-gradient step: undo its count
            zero_step_counts(optimizer)
        with _single_process_quiet(env):
            dcp_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_DIR))
        if export_hf:
            weights = full_model_state(model, env)  # collective for FSDP; rank 0 gets the tensors
            if env.is_main:
                write_model_files(tmp, weights, model_cfg, tokenizer_dir=tokenizer_dir,
                                  extra={"step": step, "tokens": int(train_state.get("tokens", 0))})
        rng = gather_objects(rng_state(), env)  # one entry per rank
        barrier(env)
        if env.is_main:
            torch.save({"version": STATE_VERSION, **train_state, "rng": rng}, tmp / STATE_FILE)
            replace_dir(tmp, final)
    except BaseException:
        if env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier(env)
    return final


def zero_step_counts(optimizer) -> None:
    """Set every parameter's optimizer `step` back to 0, in place (the state dict being saved shares these
    tensors). torch's get_state_dict initializes an empty optimizer state by running one step with zero
    gradients and lr 0: the weights and moments stay as they were, but `step` becomes 1, so without this the
    first real update would use step 2's bias correction (about 0.73 of AdamW's intended first step)."""
    for state in optimizer.state.values():
        if "step" in state:
            if torch.is_tensor(state["step"]):
                state["step"].zero_()
            else:
                state["step"] = 0


def full_model_state(model: torch.nn.Module, env: Dist) -> dict[str, torch.Tensor]:
    """Unsharded CPU weights with clean names on rank 0 ({} elsewhere); collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if env.enabled:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    module = getattr(model, "module", model)
    return {k.replace("_orig_mod.", ""): v for k, v in module.state_dict().items()}


def load_train_checkpoint(path: str | Path, model: torch.nn.Module, optimizer, *, env: Dist = Dist()) -> dict:
    """Load model, optimizer and this rank's RNG from checkpoint dir `path`; returns its train state.

    The checkpoint may come from any number of ranks (DCP reshards). CheckpointError naming the dir
    when it cannot be read.
    """
    path = Path(path)
    state = load_train_state(path)
    if state["version"] == 1:  # the old single-process layout: full weights + optimizer.state_dict()
        if env.enabled:
            raise CheckpointError(f"{path} is a single-process checkpoint of an older lightcoder; resume it with "
                                  "one process once (it is rewritten in the sharded format), then use torchrun")
        load_model_weights(path, getattr(model, "module", model))
        optimizer.load_state_dict(state.pop("optimizer"))
        state["rng"] = [state["rng"]]
    else:
        from torch.distributed.checkpoint import load as dcp_load
        from torch.distributed.checkpoint.api import CheckpointException
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(model, optimizer)
        loaded = {"model": model_sd, "optim": optim_sd}
        try:
            with _single_process_quiet(env):
                dcp_load(loaded, checkpoint_id=str(path / DCP_DIR))
        except (Exception, CheckpointException) as exc:  # noqa: BLE001 - (a BaseException subclass)
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(_corrupt_message(path, f"{DCP_DIR}/ cannot be loaded: {reason}")) from exc
        set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    # Same number of ranks: each rank continues its own RNG stream; otherwise rank r takes r mod old ranks.
    set_rng_state(state["rng"][env.rank % len(state["rng"])])
    return state


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
    if not isinstance(state, dict) or state.get("version") not in (1, STATE_VERSION):
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


@contextlib.contextmanager
def _single_process_quiet(env: Dist):
    """DCP warns that it 'assumes a single process' whenever no process group runs: that is our intent."""
    with warnings.catch_warnings():
        if not env.enabled:
            warnings.filterwarnings("ignore", message=r"torch\.distributed is disabled")
        yield


def _corrupt_message(path: Path, reason) -> str:
    previous = [p for _, p in complete_checkpoints(path.parent) if p != path]
    fallback = (f"delete it to resume from {previous[-1].name}" if previous
                else "delete it (or the whole ckpt dir) to start over")
    return f"checkpoint {path} cannot be loaded ({reason}); {fallback}"
