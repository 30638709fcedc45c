"""Checkpoints in the Hugging Face `LlamaForCausalLM` format: our weights renamed, nothing permuted.

A checkpoint dir holds config.json, model.safetensors (HF names), generation_config.json, the
tokenizer files and lightcoder.json (the run config); `transformers.AutoModelForCausalLM.from_pretrained`
loads it unchanged, and `load_checkpoint` loads any Llama dir with safetensors weights (ours, or a
released one such as aiXcoder-7B's, sharded or not).

Example: save_checkpoint(model, cfg, "run/ckpt/step_000100", tokenizer_dir="run/tokenizer")
         model, cfg = load_checkpoint(resolve_checkpoint("run"))
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lightcoder.artifacts import replace_dir, write_json_atomic
from lightcoder.model.config import ModelConfig
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.special_tokens import BOS, EOS, SPECIAL_TOKENS

# Special tokens take ids 0..10 in SPECIAL_TOKENS order: <s> is 1 and </s> is 2, as in aiXcoder-7B.
BOS_ID, EOS_ID = SPECIAL_TOKENS.index(BOS), SPECIAL_TOKENS.index(EOS)
WEIGHTS_NAME, WEIGHTS_INDEX_NAME = "model.safetensors", "model.safetensors.index.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "added_tokens.json", "vocab.json", "merges.txt",
)

# Our name -> HF name, per layer and global. Same RoPE convention, so no permutation of wq/wk.
_LAYER_NAMES = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_NAMES = {"tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head"}
_FROM_HF_LAYER = {v: k for k, v in _LAYER_NAMES.items()}
_FROM_HF_GLOBAL = {v: k for k, v in _GLOBAL_NAMES.items()}
_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)\.weight")
_HF_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")


class CheckpointError(ValueError):
    """A checkpoint dir is missing, incomplete, corrupt or not a Llama checkpoint."""


def to_hf_name(name: str) -> str:
    """'layers.3.attention.wq.weight' -> 'model.layers.3.self_attn.q_proj.weight'."""
    # a torch.compile'd or checkpoint-wrapped model's state_dict
    name = name.replace("_orig_mod.", "").replace("_checkpoint_wrapped_module.", "")
    if (m := _LAYER_RE.fullmatch(name)) and m[2] in _LAYER_NAMES:
        return f"model.layers.{m[1]}.{_LAYER_NAMES[m[2]]}.weight"
    if (base := name.removesuffix(".weight")) in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[base] + ".weight"
    raise ValueError(f"weight {name!r} is not part of lightcoder's Llama model; cannot name it in HF format")


def from_hf_name(name: str) -> str | None:
    """Inverse of to_hf_name; None for names we do not know."""
    if m := _HF_LAYER_RE.fullmatch(name):
        ours = _FROM_HF_LAYER.get(m[2])
        return None if ours is None else f"layers.{m[1]}.{ours}.weight"
    ours = _FROM_HF_GLOBAL.get(name.removesuffix(".weight"))
    return None if ours is None else ours + ".weight"


def hf_config(cfg: ModelConfig, dtype: torch.dtype) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.norm_eps,
        "initializer_range": cfg.init_std,
        # transformers 5 reads rope_parameters; 4.x, vLLM and llama.cpp read rope_theta. 5.x accepts both.
        "rope_theta": float(cfg.rope_theta),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def config_from_hf(hf: dict, where: Path) -> ModelConfig:
    """ModelConfig from a Llama config.json; CheckpointError for shapes our model cannot run."""
    if hf.get("model_type") != "llama" and "LlamaForCausalLM" not in hf.get("architectures", []):
        raise CheckpointError(f"{where}: not a Llama checkpoint (model_type={hf.get('model_type')!r})")
    supported_values = {"attention_bias": (None, False), "mlp_bias": (None, False), "hidden_act": (None, "silu")}
    for key, supported in supported_values.items():
        if hf.get(key) not in supported:
            raise CheckpointError(f"{where}: {key}={hf[key]!r} is not supported by lightcoder's Llama model")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise CheckpointError(f"{where}: RoPE scaling {rope!r} is not supported (only plain RoPE)")
    try:
        n_heads = hf["num_attention_heads"]
        cfg = ModelConfig(
            dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads, ffn_dim=hf["intermediate_size"],
            vocab_size=hf["vocab_size"], max_seq_len=hf.get("max_position_embeddings", 2048),
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)), init_std=float(hf.get("initializer_range", 0.02)),
        )
    except KeyError as e:
        raise CheckpointError(f"{where}: config.json lacks {e.args[0]!r}") from None
    except ValueError as e:
        raise CheckpointError(f"{where}: config.json describes an invalid model: {e}") from None
    if hf.get("head_dim") not in (None, cfg.head_dim):
        raise CheckpointError(f"{where}: head_dim {hf['head_dim']} != hidden_size / num_attention_heads; unsupported")
    return cfg


def save_checkpoint(
    model: Transformer | None,
    cfg: ModelConfig,
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    extra: dict | None = None,
    before_commit: Callable[[Path], None] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write an HF LlamaForCausalLM dir atomically (tmp dir + rename); replaces an existing out_dir.

    The weights are `model.state_dict()`, or `state_dict` (our names) when given, e.g. the full state
    gathered from a sharded model. `extra` goes to lightcoder.json. `before_commit(tmp_dir)` may add
    files (train_state.pt) so they appear together with the weights.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_model_files(tmp, model.state_dict() if state_dict is None else state_dict, cfg,
                          tokenizer_dir=tokenizer_dir, extra=extra)
        if before_commit is not None:
            before_commit(tmp)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def write_model_files(directory: Path, state_dict: dict[str, torch.Tensor], cfg: ModelConfig, *,
                      tokenizer_dir: str | Path | None = None, extra: dict | None = None) -> None:
    """The HF files (weights, config, generation config, lightcoder.json, tokenizer) into an existing dir."""
    directory = Path(directory)
    state = {to_hf_name(k): v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    dtype = next(iter(state.values())).dtype
    save_file(state, directory / WEIGHTS_NAME, metadata={"format": "pt"})
    write_json_atomic(directory / "config.json", hf_config(cfg, dtype))
    write_json_atomic(directory / "generation_config.json", {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID})
    write_json_atomic(directory / "lightcoder.json", extra or {})
    if tokenizer_dir is not None:
        copied = [n for n in TOKENIZER_FILES if (Path(tokenizer_dir) / n).is_file()]
        if not copied:
            raise ValueError(f"tokenizer_dir {tokenizer_dir} holds none of {', '.join(TOKENIZER_FILES)}; "
                             "pass the dir written by `lightcoder tokenizer`")
        for name in copied:
            shutil.copyfile(Path(tokenizer_dir) / name, directory / name)


def is_complete(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (
        (path / WEIGHTS_NAME).is_file() or (path / WEIGHTS_INDEX_NAME).is_file()
    )


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir itself, or the newest complete ckpt/step_* of a run dir, or of a ckpt dir."""
    path = Path(path)
    if is_complete(path):
        return path
    ckpt_dir = path / "ckpt" if (path / "ckpt").is_dir() else path
    steps = sorted(
        (int(m[1]), p) for p in ckpt_dir.glob("step_*") if (m := re.fullmatch(r"step_(\d+)", p.name)) and is_complete(p)
    )
    if steps:
        return steps[-1][1]
    raise CheckpointError(
        f"no checkpoint found at {path}: expected a checkpoint dir (config.json + {WEIGHTS_NAME}), "
        "a run dir with complete ckpt/step_* dirs, or a ckpt dir; train first or check the path"
    )


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[Transformer, ModelConfig]:
    """Load a Llama checkpoint dir (ours or any HF LlamaForCausalLM with safetensors) in eval mode.

    dtype None keeps the stored dtype.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a directory)")
    hf = _read_json(path, "config.json")
    cfg = config_from_hf(hf, path)
    state = {}
    for name, tensor in _read_weights(path).items():
        ours = from_hf_name(name)
        if ours is not None:
            state[ours] = tensor
        elif not name.endswith("rotary_emb.inv_freq"):  # old HF checkpoints stored this buffer
            _corrupt(path, f"unexpected tensor {name!r}")
    if "output.weight" not in state and hf.get("tie_word_embeddings") and "tok_embeddings.weight" in state:
        state["output.weight"] = state["tok_embeddings.weight"].clone()

    with torch.device("meta"):
        model = Transformer(cfg)
    expected = model.state_dict()
    if missing := sorted(set(expected) - set(state)):
        _corrupt(path, f"missing tensors {[to_hf_name(k) for k in missing[:5]]}{' ...' if len(missing) > 5 else ''}")
    for name, tensor in state.items():
        if name not in expected:
            _corrupt(path, f"tensor {to_hf_name(name)!r} does not belong to a {cfg.n_layers}-layer model")
        if tensor.shape != expected[name].shape:
            _corrupt(path, f"{to_hf_name(name)} has shape {tuple(tensor.shape)}, config.json implies "
                           f"{tuple(expected[name].shape)}")
    dtypes = {t.dtype for t in state.values()}
    target = dtype or (dtypes.pop() if len(dtypes) == 1 else torch.float32)
    state = {k: v.to(device=device, dtype=target) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.init_rope()  # the RoPE buffers are still on meta; rebuild them next to the weights
    return model.eval(), cfg


def verify_checkpoint_files(path: Path) -> None:
    """CheckpointError unless config.json and tokenizer.json (when present) parse and every weights
    file's header covers the file (safetensors' own check, without reading the tensors): a copy of
    the directory (`lightcoder export --format hf`) is then one that loads."""
    _read_json(path, "config.json")
    if (path / "tokenizer.json").is_file():
        _read_json(path, "tokenizer.json")
    for file in _weight_files(path):
        try:
            with safe_open(file, "pt"):
                pass
        except (SafetensorError, OSError) as e:
            _corrupt(path, f"cannot read {file.name} ({e})")


def _weight_files(path: Path) -> list[Path]:
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    if not (path / WEIGHTS_INDEX_NAME).is_file():
        _corrupt(path, f"no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME}); only safetensors weights are supported")
    index = _read_json(path, WEIGHTS_INDEX_NAME)
    try:
        return [path / name for name in sorted(set(index["weight_map"].values()))]
    except (KeyError, AttributeError, TypeError):
        _corrupt(path, f"{WEIGHTS_INDEX_NAME} has no valid weight_map")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    state = {}
    for file in _weight_files(path):
        try:
            state.update(load_file(file))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            _corrupt(path, f"cannot read {file.name} ({e})")
    return state


def _read_json(path: Path, name: str) -> dict:
    try:
        data = json.loads((path / name).read_text())
    except FileNotFoundError:
        _corrupt(path, f"{name} is missing")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        _corrupt(path, f"{name} is not valid JSON ({e})")
    if not isinstance(data, dict):
        _corrupt(path, f"{name} is not a JSON object")
    return data


def _corrupt(path: Path, detail: str):
    raise CheckpointError(
        f"checkpoint {path} is incomplete or corrupt: {detail}; delete it and resume from an earlier one"
    )
