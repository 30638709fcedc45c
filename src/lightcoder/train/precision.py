"""Which dtype training autocasts its matmuls to: `train.dtype auto` (the default) decides per machine.

bf16 autocast doubles training speed where the hardware multiplies bf16 natively (NVIDIA GPUs since
Ampere; CPUs with AVX-512 BF16 or AMX, such as the AVX-512 EPYC the quickstart was tuned on, where it is
about 2x fp32). Elsewhere torch falls back to a slow path: on an AVX2-only EPYC the quickstart model
trained at 184 tokens/s in bf16 against 4,676 in fp32 (measured with train/speed.py), so a 15-minute
quickstart trained 79 steps instead of about 2,500 and learned nothing. `auto` therefore takes bf16
where the CPU lists native bf16 instructions, and otherwise times one block-shaped forward and backward
in each dtype and keeps bf16 only where it is clearly faster.

Example: resolve_dtype("auto", torch.device("cpu")) -> "fp32" on an AVX2 laptop, "bf16" on a Sapphire Rapids
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo: native bf16 dot products
MIN_SPEEDUP = 1.1  # without those flags, bf16 must beat fp32 by this much to be chosen (timing noise)


def resolve_dtype(setting: str, device: torch.device) -> str:
    """The autocast dtype a run uses: setting itself ("bf16" / "fp32"), or for "auto" this device's faster one."""
    return choose_dtype(setting, device)[0]


def choose_dtype(setting: str, device: torch.device) -> tuple[str, str]:
    """(dtype, why): resolve_dtype's choice and the reason to print."""
    if setting != "auto":
        return setting, "as set"
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)  # Ampere and later, not emulated
        return ("bf16", "the GPU has bf16 units") if native else ("fp32", "the GPU only emulates bf16")
    if device.type != "cpu":
        return "fp32", f"no bf16 check for {device.type}"
    if cpu_has_native_bf16():
        return "bf16", "the CPU has native bf16 instructions"
    speedup = cpu_bf16_speedup()
    why = f"bf16 autocast measured {speedup:.2f}x fp32's speed on this CPU"
    return ("bf16" if speedup >= MIN_SPEEDUP else "fp32"), why


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this (Linux) CPU lists bf16 instructions; False where the file is missing (other systems)."""
    try:
        flags = set(cpuinfo.read_text(errors="replace").split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


@lru_cache(maxsize=1)
def cpu_bf16_speedup(rows: int = 1024, dim: int = 192, hidden: int = 512) -> float:
    """fp32 seconds / bf16-autocast seconds of one SwiGLU-sized forward and backward on the CPU (well under a
    second either way)."""
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode(False):
        x = torch.randn(rows, dim, generator=generator)
        up = torch.randn(dim, hidden, generator=generator, requires_grad=True)
        down = torch.randn(hidden, dim, generator=generator, requires_grad=True)

    def once(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = torch.nn.functional.silu(x @ up) @ down
        out.float().square().mean().backward()
        return time.perf_counter() - start

    # also when asked from inside an optimizer step (no_grad) or an autocast region (which would turn the
    # fp32 pass's backward into bf16)
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False):
        return _ratio(once)


def _ratio(once) -> float:
    """fp32 / bf16 seconds: the best of three after a warm-up, bf16 cut short once it is clearly slower."""
    once(False)
    fp32 = min(once(False) for _ in range(3))
    once(True)
    bf16 = float("inf")
    for _ in range(3):
        bf16 = min(bf16, once(True))
        if bf16 > 2 * fp32:  # no need to time a slow path three times
            break
    return fp32 / bf16
