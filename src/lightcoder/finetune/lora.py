"""LoRA adapters on lightcoder's Llama model through `peft`, saved in peft's own format with HF names.

Why peft: it is the format transformers (`PeftModel.from_pretrained`) and vLLM (`--lora-modules`)
load, and its LoRA layers, merge and unmerge are maintained upstream; we only map names. Our
modules are 1:1 renames of HF Llama's (model/hf.py), so an adapter trained on our model is a
plain Llama adapter:

    ours (peft on Transformer)                          file (peft on LlamaForCausalLM)
    base_model.model.layers.3.attention.wq.lora_A.weight -> base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
    target_modules ["wq", "w1", ...]                     -> ["q_proj", "gate_proj", ...]

An adapter dir holds adapter_config.json + adapter_model.safetensors (peft) and lightcoder.json
(the base's fingerprint and the FIM template it was trained with).

QLoRA (`quantize_4bit`): the base's linear layers become bitsandbytes 4-bit NF4 layers with bf16
compute, LoRA on top, as aiXcoder's finetune.py; CUDA only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from lightcoder.artifacts import replace_dir
from lightcoder.finetune.config import LORA_TARGETS, LoraSettings
from lightcoder.model.hf import from_hf_name, to_hf_name
from lightcoder.model.llama import Transformer

OURS = {"q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "o_proj": "wo",
        "gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}  # HF target name -> our module name
ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_META = "adapter_config.json", "adapter_model.safetensors", "lightcoder.json"
_PREFIX = "base_model.model."


class AdapterMismatchError(ValueError):
    """An adapter that does not belong to the base it is loaded on."""


def peft_config(settings: LoraSettings, *, hf_names: bool, base_path: str = ""):
    from peft import LoraConfig

    targets = list(settings.targets) if hf_names else [OURS[t] for t in settings.targets]
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM" if hf_names else None,
                      base_model_name_or_path=base_path or None)


def add_lora(model: Transformer, settings: LoraSettings):
    """Freeze `model` and wrap it with fresh LoRA layers (B = 0: the wrapped model equals the base)."""
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    return get_peft_model(model, peft_config(settings, hf_names=False))


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameter counts; a 4-bit packed weight counts its unpacked elements."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.dtype == torch.uint8 else 1)  # bitsandbytes packs two 4-bit values per byte
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


# ----------------------------------------------------------------------------- names


def to_hf_key(key: str) -> str:
    """'base_model.model.layers.3.attention.wq.lora_A.weight' -> peft's key on LlamaForCausalLM."""
    inner = key.removeprefix(_PREFIX)
    module, _, leaf = inner.rpartition(".lora_")
    return _PREFIX + to_hf_name(module + ".weight").removesuffix(".weight") + ".lora_" + leaf


def from_hf_key(key: str) -> str:
    """Inverse of to_hf_key; AdapterMismatchError for a module our Llama model does not have."""
    inner = key.removeprefix(_PREFIX)
    module, _, leaf = inner.rpartition(".lora_")
    ours = from_hf_name(module + ".weight")
    if ours is None or not leaf:
        raise AdapterMismatchError(f"adapter tensor {key!r} targets a module a Llama model does not have")
    return _PREFIX + ours.removesuffix(".weight") + ".lora_" + leaf


# ----------------------------------------------------------------------------- files


def save_adapter(peft_model, settings: LoraSettings, out_dir: Path, *, meta: dict,
                 extra_files: dict[str, object] | None = None) -> Path:
    """Write an adapter dir atomically (tmp dir + rename); extra_files: name -> object for torch.save."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        state = get_peft_model_state_dict(peft_model)
        save_file({to_hf_key(k): v.detach().float().cpu().contiguous() for k, v in state.items()},
                  tmp / ADAPTER_WEIGHTS, metadata={"format": "pt"})
        peft_config(settings, hf_names=True, base_path=meta.get("base", "")).save_pretrained(str(tmp))
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")
        for name, obj in (extra_files or {}).items():
            torch.save(obj, tmp / name)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_adapter_settings(adapter_dir: Path) -> LoraSettings:
    try:
        cfg = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise AdapterMismatchError(f"{adapter_dir} is not a peft adapter dir ({ADAPTER_CONFIG}: {e})") from None
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterMismatchError(f"{adapter_dir}: a {cfg.get('peft_type')} adapter; only LoRA is supported")
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown:
        raise AdapterMismatchError(f"{adapter_dir} adapts {unknown}, which a Llama model does not have")
    return LoraSettings(r=int(cfg["r"]), alpha=float(cfg["lora_alpha"]), dropout=0.0, targets=tuple(targets))


def load_adapter(model: Transformer, adapter_dir: Path):
    """`model` wrapped with the adapter in adapter_dir (eval mode); AdapterMismatchError naming the first
    tensor whose shape or place does not fit this base."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    peft_model = add_lora(model, read_adapter_settings(adapter_dir))
    expected = {k: v for k, v in peft_model.state_dict().items() if ".lora_" in k}
    state = {}
    for key, tensor in load_file(adapter_dir / ADAPTER_WEIGHTS).items():
        ours = from_hf_key(key)
        slot = ours.replace(".weight", ".default.weight")
        if slot not in expected:
            raise AdapterMismatchError(f"adapter {adapter_dir}: {key} has no place in this base "
                                       f"({model.cfg.n_layers} layers); it was trained on another model")
        if tuple(tensor.shape) != tuple(expected[slot].shape):
            raise AdapterMismatchError(
                f"adapter {adapter_dir}: {key} has shape {tuple(tensor.shape)}, this base needs "
                f"{tuple(expected[slot].shape)} (dim {model.cfg.dim}); it was trained on another base model")
        state[ours] = tensor
    missing = len(expected) - len(state)
    if missing:
        raise AdapterMismatchError(f"adapter {adapter_dir} lacks {missing} of the {len(expected)} LoRA tensors "
                                   "its config names; the adapter files are incomplete")
    set_peft_model_state_dict(peft_model, state)
    return peft_model.eval()


def merged_model(model: Transformer, adapter_dir: Path) -> Transformer:
    """The base with the adapter merged in (W + B A * alpha / r): an ordinary Transformer again."""
    peft_model = load_adapter(model, adapter_dir)
    merged = peft_model.merge_and_unload()
    for p in merged.parameters():
        p.requires_grad_(False)
    return merged.eval()


def quantize_4bit(model: Transformer, device: torch.device) -> Transformer:
    """Replace every linear layer but the output head with a bitsandbytes NF4 4-bit layer (bf16
    compute) on `device`; RuntimeError naming the fix when there is no CUDA device or no bitsandbytes."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise RuntimeError("--method qlora quantizes the base to 4-bit NF4 with bitsandbytes, which needs a CUDA "
                           "GPU; this machine has none: use --method lora (a bf16/fp32 base) or run on a GPU")
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise RuntimeError("--method qlora needs bitsandbytes: pip install 'lightcoder[qlora]'") from None
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child is not model.output:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                      compute_dtype=torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.to(torch.bfloat16).cpu(), requires_grad=False,
                                             quant_type="nf4")
                setattr(module, name, q)
    return model.to(device)  # Params4bit quantizes as it moves to the GPU
