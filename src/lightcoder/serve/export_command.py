"""`lightcoder export RUN --format hf|gguf --out PATH`: a checkpoint for other engines.

- hf: an HF `LlamaForCausalLM` directory (config.json, model.safetensors, generation_config.json,
  tokenizer files) that transformers and vLLM load unchanged; train_state.pt is left out.
- gguf: one GGUF file for llama.cpp / Ollama (the `gguf` package writes it). The tokenizer is our
  byte-level BPE (tokenizer.ggml.model "gpt2"), special tokens are control tokens, and the FIM
  tokens are in the metadata (tokenizer.ggml.fim_pre/suf/mid_token_id and the older
  prefix/suffix/middle keys), so llama.cpp's /infill builds aiXcoder's PSM prompt by itself.
  q/k rows are permuted from HF's rotate-half order to GGML's interleaved RoPE order, as llama.cpp's
  own converter does for HF Llama checkpoints.

Example: lightcoder export run/quickstart --format gguf --out qs.gguf
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from lightcoder.model.hf import TOKENIZER_FILES, load_checkpoint, resolve_checkpoint, to_hf_name, verify_checkpoint_files

_GGUF_LAYER = {
    "attention.wq": "attn_q", "attention.wk": "attn_k", "attention.wv": "attn_v", "attention.wo": "attn_output",
    "feed_forward.w1": "ffn_gate", "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up",
    "attention_norm": "attn_norm", "ffn_norm": "ffn_norm",
}
_GGUF_GLOBAL = {"tok_embeddings": "token_embd", "norm": "output_norm", "output": "output"}


def gguf_name(name: str) -> str:
    """'layers.3.attention.wq.weight' -> 'blk.3.attn_q.weight'."""
    base = name.removesuffix(".weight")
    if base in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[base] + ".weight"
    _, i, rest = base.split(".", 2)
    return f"blk.{i}.{_GGUF_LAYER[rest]}.weight"


def rope_interleave(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection from rotate-half order (HF) to interleaved pairs (GGML's LLaMA RoPE).

    Per head, rows [x0..x_{h/2-1}, y0..y_{h/2-1}] become [x0, y0, x1, y1, ...]."""
    out_dim, in_dim = w.shape
    return w.reshape(n_heads, 2, out_dim // n_heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def export_hf(ckpt: Path, out: Path) -> Path:
    if out.resolve() == ckpt.resolve() or out.resolve() in ckpt.resolve().parents or (out / "stages.json").exists():
        raise ValueError(f"--out {out} holds the checkpoint or a run ({ckpt}); its config.json would be overwritten: "
                         "choose a directory outside the run")
    verify_checkpoint_files(ckpt)  # a truncated weights file must not be copied and called exported
    out.mkdir(parents=True, exist_ok=True)
    names = ["config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
             *TOKENIZER_FILES]
    names += [p.name for p in ckpt.glob("model-*.safetensors")]
    for name in names:
        if (ckpt / name).is_file():
            shutil.copyfile(ckpt / name, out / name)
    return out


def export_gguf(ckpt: Path, out: Path, *, dtype: str = "f32") -> Path:
    """One GGUF file at `out`: the hyperparameters, the tokenizer, then the weights (f32 or f16 matrices)."""
    import gguf

    from lightcoder.tokenizer.tokenizer import Tokenizer

    model, cfg = load_checkpoint(ckpt, dtype=torch.float32)
    tok_json = json.loads((ckpt / "tokenizer.json").read_text())
    tokenizer = Tokenizer.load(ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(ckpt.name)
    _add_hyperparameters(writer, cfg, dtype)
    _add_tokenizer(writer, tokenizer, tok_json, cfg.vocab_size)
    _add_tensors(writer, model, cfg, dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _add_hyperparameters(writer, cfg, dtype: str) -> None:
    """llama.* metadata: context, widths, heads, norm eps, RoPE; the file type from `dtype`."""
    import gguf

    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.ffn_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)


def _add_tokenizer(writer, tokenizer, tok_json: dict, vocab_size: int) -> None:
    """tokenizer.ggml.*: byte-level BPE ("gpt2") with its merges, the special ids, and the FIM / end-of-
    generation tokens llama.cpp's /infill needs (both the fim_* keys and the older prefix/suffix/middle)."""
    from lightcoder.tokenizer.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, STOP_TOKENS

    tokens, types = _token_table(tokenizer, vocab_size)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_id)
    writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_pad_token_id(tokenizer.pad_id)
    writer.add_unk_token_id(tokenizer.unk_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    fim = {"pre": FIM_PREFIX, "suf": FIM_SUFFIX, "mid": FIM_MIDDLE}
    old = {"pre": "prefix", "suf": "suffix", "mid": "middle"}
    for key, token in fim.items():
        writer.add_uint32(f"tokenizer.ggml.fim_{key}_token_id", tokenizer.token_to_id(token))
        writer.add_uint32(f"tokenizer.ggml.{old[key]}_token_id", tokenizer.token_to_id(token))
    writer.add_uint32("tokenizer.ggml.eot_token_id", tokenizer.eos_id)
    writer.add_array("tokenizer.ggml.eog_token_ids", sorted(tokenizer.token_to_id(t) for t in STOP_TOKENS))


def _token_table(tokenizer, vocab_size: int) -> tuple[list[str], list]:
    """(pieces, token types), one per model row: special tokens CONTROL, rows past the tokenizer's
    vocabulary "[PAD<i>]" UNUSED."""
    import gguf

    from lightcoder.tokenizer.special_tokens import SPECIAL_TOKENS

    tokens = [""] * vocab_size
    for piece, i in tokenizer.backend.get_vocab(with_added_tokens=True).items():
        tokens[i] = piece
    types = [gguf.TokenType.CONTROL if t in SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in tokens]
    for i, t in enumerate(tokens):
        if not t:
            tokens[i], types[i] = f"[PAD{i}]", gguf.TokenType.UNUSED
    return tokens, types


def _add_tensors(writer, model, cfg, dtype: str) -> None:
    """Every weight under its GGUF name; q/k rows in GGML's interleaved RoPE order (rope_interleave).
    Matrices in `dtype`, 1-D norms always f32, as llama.cpp wants."""
    import numpy as np

    np_dtype = np.float32 if dtype == "f32" else np.float16
    for name, tensor in model.state_dict().items():
        t = tensor.detach().float()
        if name.endswith("attention.wq.weight"):
            t = rope_interleave(t, cfg.n_heads)
        elif name.endswith("attention.wk.weight"):
            t = rope_interleave(t, cfg.n_kv_heads)
        arr = t.numpy()
        arr = arr.astype(np.float32 if arr.ndim == 1 else np_dtype)
        writer.add_tensor(gguf_name(name), arr)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lightcoder export", description="Export a checkpoint for other engines.")
    p.add_argument("checkpoint", help="run dir, ckpt dir, checkpoint dir, or a `lightcoder finetune` run")
    p.add_argument("--format", choices=("hf", "gguf"), required=True)
    p.add_argument("--out", required=True, help="output dir (hf) or file (gguf)")
    p.add_argument("--dtype", choices=("f32", "f16"), default="f32", help="GGUF weight type")
    args = p.parse_args(argv)
    from lightcoder.finetune.deploy import merged_checkpoint

    ckpt = merged_checkpoint(args.checkpoint) or resolve_checkpoint(args.checkpoint)  # LoRA run: merged weights
    out = Path(args.out)
    if args.format == "hf":
        export_hf(ckpt, out)
    else:
        if not (ckpt / "tokenizer.json").is_file():
            raise ValueError(f"{ckpt} has no tokenizer.json; GGUF export needs lightcoder's BPE tokenizer")
        export_gguf(ckpt, out, dtype=args.dtype)
    print(f"exported {ckpt} -> {out} ({args.format})", file=sys.stderr)
    return 0


__all__ = ["export_gguf", "export_hf", "gguf_name", "main", "rope_interleave", "to_hf_name"]
