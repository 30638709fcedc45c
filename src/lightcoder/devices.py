"""Which device a model runs on: one rule for training, serving, completing and evaluating.

"auto" is the GPU when CUDA is available, else the CPU; "cpu" and "cuda" (or "cuda:N") force one, and
"cuda" without CUDA is an error that names the setting to change. The training loop (train/distributed.py),
`lightcoder serve/complete --device`, `python -m lightcoder.eval run --device` and the run's eval stage
(`eval.device`) all resolve through `resolve_device`, so a run trained on a GPU is also served and
scored there.

Example: resolve_device("auto") -> device(type='cpu') on a machine without CUDA
         resolve_device("cuda", setting="--device") -> ValueError("--device cuda: no CUDA device ... --device cpu")
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")  # plus "cuda:N" for one GPU of several
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def check_device_name(name: str, setting: str = "device") -> None:
    """ValueError unless `name` is auto, cpu, cuda or cuda:N (checked without touching CUDA)."""
    if name not in DEVICE_CHOICES and not _CUDA_INDEX.fullmatch(name):
        raise ValueError(f"{setting} must be one of {DEVICE_CHOICES} or cuda:N, got {name!r}")


def resolve_device(name: str | torch.device, *, setting: str = "device", local_rank: int = 0) -> torch.device:
    """The torch device for `name`; "auto" and "cuda" pick GPU local_rank (modulo the GPUs present)."""
    import torch  # here, so that configs can validate device names without loading torch

    if isinstance(name, torch.device):
        return name
    check_device_name(name, setting)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        flag = setting if setting.startswith("--") else f"--{setting}"  # a config key is set as --eval.device
        raise ValueError(f"{setting} {name}: no CUDA device is available here (torch {torch.__version__}, "
                         f"built {'with' if torch.version.cuda else 'without'} CUDA); use {flag} cpu or auto")
    index = _CUDA_INDEX.fullmatch(name)
    if index:
        if int(index.group(1)) >= torch.cuda.device_count():
            raise ValueError(f"{setting} {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(name)
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def model_id_suffix(device: torch.device) -> str:
    """What a model id gains on a GPU ("@cuda"; nothing on the CPU, so the ids of CPU runs stay as they
    were): an eval resumed on the other kind of device restarts rather than mixes samples. The kind, not
    the index, so shards generated on cuda:0 and cuda:1 still belong together.

    Example: model_id_suffix(torch.device("cuda", 1)) -> "@cuda"
    """
    return "" if device.type == "cpu" else f"@{device.type}"


def add_device_flag(parser, *, what: str = "the model") -> None:
    """`--device auto|cpu|cuda|cuda:N` on an argparse parser (default auto), resolved to a torch.device as
    it is parsed, so "cuda" on a machine without CUDA is a usage error before any model is loaded."""
    import argparse

    def device(text: str):
        try:
            return resolve_device(text, setting="--device")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument("--device", default="auto", type=device,
                        help=f"where {what} runs: auto (the GPU when CUDA is available, else the CPU), cpu, "
                             "cuda or cuda:N")
