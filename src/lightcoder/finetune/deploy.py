"""A fine-tuned run as something to serve or export.

    lightcoder serve RUN              base + adapter: the base is loaded from the path the run recorded,
                                      the adapter merged into it in memory (the files stay as they are)
    lightcoder export RUN --format hf|gguf   writes the merged weights once to RUN/merged/, exports that
    lightcoder serve RUN/adapter      an adapter dir alone works too (its base from adapter_config.json)

A full fine-tune's checkpoints are ordinary HF Llama dirs, served and exported as any run; only its
FIM template comes from here. Loading refuses an adapter whose base has changed since training
(config.json or weight files differ from the recorded fingerprint) or whose shapes do not fit.

Example: tuned = load_finetuned("run/ft"); Completer(tuned.model, tuned.tokenizer, tuned.cfg, template=tuned.template)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lightcoder.finetune.lora import ADAPTER_CONFIG, ADAPTER_META, AdapterMismatchError, merged_model
from lightcoder.model.config import ModelConfig
from lightcoder.model.hf import CheckpointError, is_complete, load_checkpoint, resolve_checkpoint, save_checkpoint

RUN_FILE = "finetune.json"
MERGED_DIR = "merged"


@dataclass
class Finetuned:
    model: torch.nn.Module
    cfg: ModelConfig
    tokenizer: object
    template: str
    base: Path
    dtype_note: str = "as stored"  # why the weights are in their dtype (infer/weight_dtype.py)


def adapter_dir_of(path: str | Path) -> Path | None:
    """The LoRA adapter a path names: an adapter dir, or a LoRA fine-tune run's RUN/adapter."""
    p = Path(path)
    if (p / ADAPTER_CONFIG).is_file():
        return p
    if (p / RUN_FILE).is_file() and (p / "adapter" / ADAPTER_CONFIG).is_file():
        return p / "adapter"
    if (p / RUN_FILE).is_file() and json.loads((p / RUN_FILE).read_text()).get("method") != "full":
        raise CheckpointError(f"{p} is a LoRA fine-tune run without a finished adapter (no {p}/adapter): "
                              "finish it with the same `lightcoder finetune` command first")
    return None


def adapter_meta(adapter: Path) -> dict:
    meta_path = adapter / ADAPTER_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if not meta.get("base"):
        meta["base"] = json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or ""
    return meta


def check_base(adapter: Path, meta: dict) -> Path:
    """The adapter's base dir, checked to be the one it was trained on (AdapterMismatchError otherwise)."""
    from lightcoder.finetune.base import base_fingerprint

    base = Path(meta["base"]) if meta.get("base") else None
    if base is None or not (base / "config.json").is_file():
        raise AdapterMismatchError(f"adapter {adapter} was trained on base {meta.get('base') or '(not recorded)'}, "
                                   "which is not there: put the base model back at that path, or set "
                                   f"base_model_name_or_path in {adapter / ADAPTER_CONFIG}")
    expected = meta.get("base_fingerprint")
    if expected and base_fingerprint(base) != expected:
        raise AdapterMismatchError(f"adapter {adapter} does not match its base {base}: the base's config.json or "
                                   "weight files changed since fine-tuning; restore that base or fine-tune again")
    return base


def load_finetuned(path: str | Path, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype | str | None = None) -> Finetuned | None:
    """The model of a `lightcoder finetune` run (LoRA: base + merged adapter) or adapter dir; None for
    anything else (Completer.load then loads it as an ordinary checkpoint). dtype: as `Completer.load`'s;
    the adapter merges into the base in that dtype."""
    from lightcoder.finetune.base import open_base
    from lightcoder.infer.weight_dtype import cast_weights, load_dtype

    p = Path(path)
    adapter = adapter_dir_of(p)
    if adapter is not None:
        meta = adapter_meta(adapter)
        base_dir = check_base(adapter, meta)
        model, cfg = load_checkpoint(base_dir, device=device, dtype=load_dtype(dtype))
        why = cast_weights(model, torch.device(device), dtype, copies=2)  # served: a second copy
        base = open_base(base_dir, meta.get("template", "auto"))
        return Finetuned(merged_model(model, adapter), cfg, base.tokenizer, base.template.name, base_dir, why)
    if (p / RUN_FILE).is_file():  # a full fine-tune: ordinary checkpoints, the run's template
        ckpt = resolve_checkpoint(p)
        model, cfg = load_checkpoint(ckpt, device=device, dtype=load_dtype(dtype))
        why = cast_weights(model, torch.device(device), dtype, copies=2)  # served: a second copy
        template = json.loads((p / RUN_FILE).read_text()).get("template", "auto")
        base = open_base(ckpt, template)
        return Finetuned(model, cfg, base.tokenizer, base.template.name, ckpt, why)
    return None


def merged_checkpoint(path: str | Path) -> Path | None:
    """For a LoRA run or adapter dir: an HF dir of the merged weights (written once, next to the
    adapter), for `lightcoder export`; None for anything else."""
    adapter = adapter_dir_of(Path(path))
    if adapter is None:
        return None
    meta = adapter_meta(adapter)
    base = check_base(adapter, meta)
    out = adapter.parent / MERGED_DIR if adapter.name == "adapter" else adapter.parent / f"{adapter.name}-merged"
    stamp = {"adapter": str(adapter.resolve()), "adapter_mtime_ns": (adapter / "adapter_model.safetensors").stat().st_mtime_ns}
    if is_complete(out) and (out / "lightcoder.json").is_file() and \
            json.loads((out / "lightcoder.json").read_text()).get("merged_from") == stamp:
        return out
    model, cfg = load_checkpoint(base)
    merged = merged_model(model, adapter)
    return save_checkpoint(merged, cfg, out, tokenizer_dir=base, extra={"merged_from": stamp, **meta})
