"""Muon on the blocks' weight matrices, AdamW on the rest, in one optimizer (`train.optimizer "muon"`).

Muon (K. Jordan et al., 2024) updates a 2-D weight with its Nesterov momentum *orthogonalized*: the
matrix's singular values pushed toward 1 by a few Newton–Schulz iterations, so that every direction of
the update moves at about the same rate instead of a few dominant ones. Embeddings, the output head and
the norms keep AdamW, as in the published recipe. The update is scaled by 0.2·sqrt(max(rows, cols)) so
that its RMS matches AdamW's (Liu et al. 2025, "Muon is scalable for LLM training"): the same `train.lr`,
schedule and weight decay serve both optimizers.

Why one class rather than `torch.optim.Muon` next to `torch.optim.AdamW`: the training loop, `set_lr`,
gradient clipping and the sharded checkpoints (torch.distributed.checkpoint's `get_state_dict`) all take
one optimizer; groups flagged `muon` keep every one of them unchanged. Muon needs whole matrices: under
FSDP2 every rank gathers each matrix's update, orthogonalizes it and keeps its own rows (cheap for the
small models measured here; a large model would want the matrices split across ranks).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn
from torch.distributed.tensor import distribute_tensor

from lightcoder.train.optim import param_groups

# Quintic Newton–Schulz coefficients of the published Muon: they push singular values in (0, 1] into
# roughly [0.7, 1.2] in five steps, which trains as well as an exact orthogonalization.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def orthogonalize(matrices: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """About U·Vᵀ of each matrix = U·S·Vᵀ of a (..., rows, cols) stack (singular values mapped near 1),
    computed in `dtype` (the run's: bf16 as published where the device is fast in it, else fp32); same shape
    and dtype as the input. A stack of same-shaped matrices runs as batched matmuls, 1.4x faster per matrix
    on CPU than one at a time.

    Example: orthogonalize(torch.diag(torch.tensor([4.0, 1.0]))) -> about diag(1, 1) (0.78 each).
    """
    a, b, c = NS_COEFFICIENTS
    x = matrices.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the (small, small) Gram side
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT  # (..., small, small)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(matrices.dtype)


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """The weights Muon updates: 2-D matrices inside the transformer blocks (not embeddings or the head)."""
    return param.ndim == 2 and "embed" not in name and "output" not in name and "lm_head" not in name


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer, two rules: groups with `muon=True` take Muon steps, the others AdamW steps.

    Every group carries lr, weight_decay (decoupled: p -= lr·wd·p), betas, eps and momentum; the loop's
    `set_lr` sets lr on all groups alike. State per parameter: `momentum_buffer` (Muon), or `exp_avg`,
    `exp_avg_sq` and `step` (AdamW), all fp32 tensors like the parameters.
    """

    def __init__(self, groups: list[dict], *, lr: float, betas: tuple[float, float], eps: float,
                 momentum: float = 0.95, ns_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(groups, {"lr": lr, "weight_decay": 0.0, "betas": betas, "eps": eps,
                                  "momentum": momentum, "muon": False})
        self.ns_dtype = ns_dtype  # the Newton-Schulz iterations' dtype (an attribute: not in the saved state)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["weight_decay"] and params:
                torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])
            if group["muon"]:
                self._muon_steps(params, group)
            else:
                for p in params:
                    self._adamw_step(p, group)
        return loss

    def _muon_steps(self, params: list[torch.Tensor], group: dict) -> None:
        """Nesterov momentum per matrix, then one batched orthogonalization per shape (tall matrices
        transposed, so that (512, 192) and (192, 512) weights share one batch)."""
        by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
        for p in params:
            state, mu = self.state[p], group["momentum"]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"].lerp_(p.grad, 1.0 - mu)
            update = p.grad.lerp(buf, mu)  # Nesterov: the gradient pulled toward the momentum
            if hasattr(update, "full_tensor"):  # an FSDP2 shard: every rank gathers the whole matrix
                update = update.full_tensor()
            by_shape[tuple(sorted(p.shape))].append((p, update if p.size(0) <= p.size(1) else update.T))
        for shape, pairs in by_shape.items():
            updates = orthogonalize(torch.stack([u for _, u in pairs]), dtype=self.ns_dtype)  # (n, small, large)
            for (p, _), update in zip(pairs, updates):
                update = update if p.size(0) <= p.size(1) else update.T
                if hasattr(p, "device_mesh"):  # keep this rank's rows (each rank computed the same update)
                    update = distribute_tensor(update, p.device_mesh, p.placements, src_data_rank=None)
                p.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(shape)))

    def _adamw_step(self, p: torch.Tensor, group: dict) -> None:
        state, (beta1, beta2) = self.state[p], group["betas"]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        state["step"] += 1
        t = float(state["step"])
        state["exp_avg"].lerp_(p.grad, 1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
        denom = (state["exp_avg_sq"] / (1.0 - beta2 ** t)).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1.0 - beta1 ** t))


def build_muon_adamw(model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                     eps: float, ns_dtype: torch.dtype = torch.bfloat16) -> MuonAdamW:
    """AdamW's groups (`optim.param_groups`: matrices decayed, norms and embeddings not), with the blocks'
    matrices moved out of the decayed one into a Muon group (decayed too)."""
    hidden = {id(p) for name, p in model.named_parameters() if p.requires_grad and is_hidden_matrix(name, p)}
    decayed, plain = param_groups(model, weight_decay)
    muon = {"params": [p for p in decayed["params"] if id(p) in hidden], "weight_decay": weight_decay,
            "muon": True, "decay": True}
    decayed["params"] = [p for p in decayed["params"] if id(p) not in hidden]
    groups = [muon, {**decayed, "muon": False}, {**plain, "muon": False}]
    return MuonAdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps, ns_dtype=ns_dtype)
