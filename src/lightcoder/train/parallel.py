"""Parallelism, activation checkpointing and torch.compile, applied to an unmodified `Transformer`.

The model (lightcoder.model.llama) is single-device code. `build_parallel_model` turns it into the
model a rank trains, always in this order (the order torch's FSDP2 and compile expect; torchtitan uses
the same one):

1. build on the meta device (no memory, no throwaway init);
2. activation checkpointing per TransformerBlock (`train.activation_checkpointing`): the block's forward
   is wrapped in `torch.utils.checkpoint` (non-reentrant), recomputed in backward; parameter names stay
   unchanged, so checkpoints do not depend on it;
3. torch.compile (`train.compile`), in place (`module.compile()`, so names get no `_orig_mod.` prefix):
   per TransformerBlock under data parallelism (FSDP2 hooks run between blocks; the identical blocks
   share one compiled graph), the whole model in one process (output head and loss fused too);
4. data parallelism across ranks (`train.parallel`):
   - `fsdp`: FSDP2 `fully_shard` on every block, then on the root (embeddings, final norm, output);
     parameters become DTensors sharded on dim 0, all-gathered per block in forward/backward and
     resharded after; gradients are reduce-scattered (averaged over ranks) in fp32. On CUDA with bf16
     the all-gathers run in bf16 (MixedPrecisionPolicy), the sharded master weights stay fp32;
   - `ddp`: DistributedDataParallel, a full fp32 replica per rank, gradients all-reduced (averaged);
   - one process: nothing;
5. materialize on the device and initialize: every rank draws the same full tensor per parameter
   (`Transformer.initial_weights`, a seeded CPU generator; or, with `train.init_from`, the weights of a
   released model to fine-tune) and keeps its own shard, so the weights are identical to a one-process
   run with the same seed, whatever the number of ranks.

Example:
    model = build_parallel_model(model_cfg, train_cfg, dist_env)   # ready to train
    with no_grad_sync(model, train_cfg, last_micro_step=False): loss.backward()
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightcoder.model.llama import Transformer
from lightcoder.train.distributed import Dist


def build_parallel_model(model_cfg, train_cfg, env: Dist) -> nn.Module:
    """The model this rank trains (see the module docstring for the fixed order of steps)."""
    with torch.device("meta"):
        model = Transformer(model_cfg)
    if train_cfg.attention == "flex" and env.device.type != "cuda":
        raise ValueError("train.attention='flex' trains on CUDA only (FlexAttention has no CPU backward); "
                         "use --train.attention auto or sdpa on CPU")
    model.attention_impl = train_cfg.attention
    if train_cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    if train_cfg.compile:
        apply_compile(model, whole_model=not env.enabled)
    mode = train_cfg.parallel if env.enabled else None
    if mode == "fsdp":
        apply_fsdp(model, env, bf16=train_cfg.dtype == "bf16")
    model.to_empty(device=env.device)
    init_weights_sharded(model, train_cfg.seed, train_cfg.init_from)
    model.train()
    if mode == "ddp":
        model = apply_ddp(model, env)
    return model


def apply_activation_checkpointing(model: Transformer) -> None:
    """Recompute each block's activations in backward instead of storing them (memory for ~1/3 more compute)."""
    for block in model.layers:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def apply_compile(model: Transformer, *, whole_model: bool = False) -> None:
    """Compile in place, the whole model or each block; dynamic=False: training shapes are fixed
    (validation shapes compile once more)."""
    if whole_model:
        model.compile(dynamic=False)
        return
    for block in model.layers:
        block.compile(dynamic=False)


def apply_fsdp(model: Transformer, env: Dist, *, bf16: bool) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    # bf16 all-gathers halve the traffic on GPUs; on CPU (gloo) parameters stay fp32 and autocast casts.
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if bf16 and env.device.type == "cuda" else MixedPrecisionPolicy()
    for i, block in enumerate(model.layers):
        # The last block's parameters are needed again at the start of backward: keep them gathered.
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(model.layers) - 1)
    fully_shard(model, mesh=mesh, mp_policy=mp)


def apply_ddp(model: nn.Module, env: Dist) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@torch.no_grad()
def init_weights_sharded(model: Transformer, seed: int, init_from: str = "") -> None:
    """`Transformer.init_weights(seed)` for a model whose parameters may be FSDP2 DTensors: each rank
    draws the same full tensor (one at a time, on CPU) and copies in its local shard. init_from: take
    the full tensors from that checkpoint dir instead (fine-tuning)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = dict(model.named_parameters())
    for name, full in (model.initial_weights(seed) if not init_from else _checkpoint_weights(init_from, model)):
        param = params[name]
        if isinstance(param, DTensor):
            # src_data_rank=None: every rank holds the same full tensor, so no communication is needed.
            shard = distribute_tensor(full.to(param.device), param.device_mesh, param.placements,
                                      src_data_rank=None)
            param.to_local().copy_(shard.to_local())
        else:
            param.copy_(full)
    model.init_rope()


def _checkpoint_weights(path: str, model: Transformer):
    """(name, fp32 CPU tensor) of a checkpoint dir, checked against the model being trained."""
    from lightcoder.model.hf import load_checkpoint

    loaded, cfg = load_checkpoint(path, dtype=torch.float32)
    if any(getattr(cfg, k) != getattr(model.cfg, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads",
                                                               "ffn_dim", "vocab_size")):
        raise ValueError(f"train.init_from {path} holds a model of another shape than model.* describes; "
                         "take the model config from that checkpoint")
    yield from loaded.state_dict().items()


def no_grad_sync(model: nn.Module, *, last_micro_step: bool):
    """Context for one micro-step's backward: gradients are synchronized across ranks only on the last
    micro-step of an optimizer step (gradient accumulation without redundant communication)."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(last_micro_step)
        return contextlib.nullcontext()
    if hasattr(model, "no_sync") and not last_micro_step:  # DDP
        return model.no_sync()
    return contextlib.nullcontext()
