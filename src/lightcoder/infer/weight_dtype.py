"""The dtype a model's weights are used in: `auto` (the default) reads half-precision weights in fp32 on CPUs
slow in them. Serving, eval, `lightcoder complete` and fine-tuning's frozen base all load through it.

Released models are stored in bf16 (aiXcoder-7B, and most HF code models). On a GPU, or on a CPU with native
bf16 instructions (AVX-512 BF16, AMX), bf16 is the fast dtype. Elsewhere (AVX2 laptops and servers) torch
multiplies bf16 and fp16 matrices through a slow path. On an AVX2-only EPYC the lc-125m shape read a
1,024-token prompt in 21.1 s in bf16 against 2.2 s in fp32, while one decoded token took 22 ms against 42 ms
(decoding reads the weights once per token, and bf16 has half the bytes). Reading the prompt dominates a
completion request, so `auto` upcasts there, when the extra bytes fit in half the memory still available.

Example: choose_weight_dtype(torch.bfloat16, torch.device("cpu"), n_params=1_300_000_000)
    -> (torch.float32, "stored in bf16; bf16 autocast measured 0.05x fp32's speed on this CPU")  # AVX2
    -> (torch.bfloat16, "as stored: the CPU has native bf16 instructions")             # Sapphire Rapids
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightcoder.train.precision import choose_dtype

DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def load_dtype(setting: str | torch.dtype | None) -> torch.dtype | None:
    """The dtype to load a checkpoint in before `cast_weights`: an explicit torch.dtype at once, else the stored
    one (a setting given by name is resolved, and checked, by `cast_weights`)."""
    return None if isinstance(setting, str) else setting


def cast_weights(model: torch.nn.Module, device: torch.device, setting: str | torch.dtype | None = "auto", *,
                 copies: int = 1) -> str:
    """Cast a loaded model in place to the dtype `setting` resolves to (`resolve_weight_dtype`); returns why,
    which starts with "as stored" exactly when nothing was cast."""
    dtype, why = resolve_weight_dtype(setting, model, device, copies=copies)
    if dtype != next(model.parameters()).dtype:
        model.to(dtype)  # tensor by tensor
        model.init_rope()  # `to` cast the RoPE tables too; they stay fp32
    return why


def resolve_weight_dtype(setting: str | torch.dtype | None, model: torch.nn.Module, device: torch.device, *,
                         copies: int = 1) -> tuple[torch.dtype, str]:
    """(dtype, why) for a loaded model: None keeps the stored dtype, "auto" asks `choose_weight_dtype`,
    anything else ("float32", torch.bfloat16, ...) is that dtype."""
    stored = next(model.parameters()).dtype
    if setting is None:
        return stored, "as stored"
    if setting == "auto":
        return choose_weight_dtype(stored, device, sum(p.numel() for p in model.parameters()), copies=copies)
    chosen = getattr(torch, setting, None) if isinstance(setting, str) else setting
    if not isinstance(chosen, torch.dtype) or not chosen.is_floating_point:
        raise ValueError(f"weights dtype {setting!r}: expected auto, float32, bfloat16 or float16")
    return chosen, "as stored" if chosen == stored else f"stored in {DTYPE_NAMES.get(stored, stored)}; as asked"


def choose_weight_dtype(stored: torch.dtype, device: torch.device, n_params: int, *, copies: int = 1,
                        available_bytes: int | None = None) -> tuple[torch.dtype, str]:
    """(dtype, why): the stored dtype, except half-precision weights on a CPU that is slow in them, which
    are read in fp32 when the extra bytes of `copies` copies (the server's decoder keeps a second, transposed
    one) fit in half of `available_bytes` (default: MemAvailable)."""
    name = DTYPE_NAMES.get(stored)
    if device.type != "cpu" or stored not in (torch.bfloat16, torch.float16):
        return stored, "as stored"
    if stored == torch.bfloat16:
        fast, why = choose_dtype("auto", device)  # training's check: the CPU's bf16 flags, else a timing
        if fast == "bf16":
            return stored, f"as stored: {why}"
    else:
        why = "torch has no fast fp16 matrix product on CPUs"
    extra = copies * n_params * (4 - stored.itemsize)
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if available is not None and extra > available // 2:
        return stored, (f"as stored, slow here: {why}; fp32 would take {extra / 2**30:.1f} GiB more, and "
                        f"{available / 2**30:.1f} GiB are available")
    return torch.float32, f"stored in {name}; {why}"


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes (Linux), else None: other systems get the upcast without the check."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def describe_weights(completer) -> str:
    """What a command prints about a loaded Completer's weights: `describe_dtype` of its model and note."""
    return describe_dtype(completer.model, completer.dtype_note)


def describe_dtype(model: torch.nn.Module, why: str) -> str:
    """The weights' dtype and, unless they are simply as stored, why.

    Example: "float32 weights (stored in bf16; bf16 autocast measured 0.05x fp32's speed on this CPU)"
    """
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return f"{dtype} weights" if why == "as stored" else f"{dtype} weights ({why})"


def weights_id_suffix(model: torch.nn.Module, why: str) -> str:
    """What an eval's model id gains when the weights were cast ("@float32"; nothing when as stored), so that
    samples decoded in two dtypes are never pooled under one id."""
    return "" if why.startswith("as stored") else "@" + str(next(model.parameters()).dtype).removeprefix("torch.")
