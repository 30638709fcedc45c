"""The process group of a training run: one process on a laptop, or N ranks under torchrun.

`init_distributed` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; multi-node
through torchrun's rendezvous) and starts the process group once: NCCL when the run trains on CUDA (one GPU
per local rank), gloo on CPU. Without WORLD_SIZE > 1 nothing is started and every helper here degrades to
the single-process answer, so the training loop has a single code path.

Example:
    dist_env = init_distributed("auto")          # Dist(rank=0, world_size=1, ...) outside torchrun
    if dist_env.is_main: write_the_report()      # shared files are written by rank 0 only
    mean_loss = all_reduce_mean(loss, dist_env)  # identity with one process
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lightcoder.devices import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` -> this rank's GPU when CUDA is available, else CPU; `cuda` without CUDA is an error."""
    return resolve_device(name, setting="train.device", local_rank=local_rank)


def init_distributed(device: str = "auto", *, timeout_min: float = 30.0) -> Dist:
    """Start (or join the already started) process group from torchrun's env vars; see module doc."""
    world_size, rank = env_world_size(), env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world_size} but MASTER_ADDR is not set: launch with "
                               "`torchrun --nproc_per_node N -m lightcoder train ...`")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def barrier(env: Dist) -> None:
    if env.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, env: Dist) -> torch.Tensor:
    """Sum over ranks (in place on a copy); the tensor itself with one process."""
    if not env.enabled:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor, env: Dist) -> torch.Tensor:
    return all_reduce_sum(tensor, env) / env.world_size if env.enabled else tensor


def any_rank(flag: bool, env: Dist) -> bool:
    """True when `flag` is True on any rank (every rank must call it at the same step)."""
    if not env.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj, env: Dist):
    """Rank 0's `obj` on every rank (so decisions based on wall clocks agree everywhere)."""
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=env.device if env.device.type == "cuda" else None)
    return box[0]


def gather_objects(obj, env: Dist) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not env.enabled:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown_distributed() -> None:
    """Tear down the process group, if one runs (torchrun workers then exit without warnings).

    The barrier first: a rank that destroys its gloo pairs while a peer still finishes its last
    collective (the final checkpoint) can abort the peer ("terminate called without an active
    exception", seen once in `make test`)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
