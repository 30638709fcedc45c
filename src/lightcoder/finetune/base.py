"""The released model a fine-tune starts from: its directory checked, its tokenizer and FIM format.

`open_base(path, template)` refuses, naming the fix:
- a directory without config.json, or whose config is not a causal LM (BertModel, ...);
- a causal LM of another architecture than Llama (our model runs Llama-architecture weights);
- a tokenizer without FIM tokens (the message names `--template`), or a `--template` whose tokens
  the tokenizer lacks (the message names the template it has).

The format (`Base.fmt`, fim/context.ExampleFormat) is the base model's own: aiXcoder's layouts and
header lines for aiXcoder-style tokenizers (ours, or the SentencePiece tokenizer.model with its
"▁"-spelled sentinels and the ☺ rule), else the family's registry template (infer/templates.py),
e.g. StarCoder: `<|endoftext|> <fim_prefix> P <fim_suffix> S <fim_middle> M <|endoftext|>`.
Every packed document starts with `doc_start_id` (block-causal training masks split there).

Example: base = open_base("aixcoder-7b-base"); base.ntp_ids("a.py", "Python", "x = 1\\n")
    -> [1, *ids("# the file path is: a.py\\n# the code file is written by Python\\nx = 1\\n"), 2]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lightcoder.fim.context import ExampleFormat
from lightcoder.fim.transforms import ntp_document
from lightcoder.infer.templates import TEMPLATES, FimTemplate, detect_template, get_template
from lightcoder.model.config import ModelConfig
from lightcoder.model.hf import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, CheckpointError, config_from_hf
from lightcoder.tokenizer.backends import ForeignTokenizer, SentencePieceTokenizer, load_tokenizer
from lightcoder.tokenizer.header import file_header

CODELLAMA_EOT = "▁<EOT>"  # CodeLlama ends an infilled middle with <EOT>, not </s>


class BaseModelError(ValueError):
    """The --base directory cannot be fine-tuned as given; the message says why and what to pass."""


@dataclass
class Base:
    path: Path
    model_cfg: ModelConfig
    tokenizer: object  # Tokenizer | SentencePieceTokenizer | ForeignTokenizer
    template: FimTemplate
    fmt: ExampleFormat
    doc_start_id: int

    @property
    def aixcoder(self) -> bool:
        return self.template.name == "aixcoder"

    def ntp_ids(self, path: str, language: str | None, code: str) -> list[int]:
        """One NTP document: aiXcoder `<s> H+code </s>`; other families `<doc_start> code [</s>]`
        (no end token when it is the doc_start itself: the next document's start closes it)."""
        if self.aixcoder:
            return self.tokenizer.encode_pieces(ntp_document(file_header(path, language=language), code))
        end = [self.tokenizer.eos_id] if self.tokenizer.eos_id != self.doc_start_id else []
        return [self.doc_start_id] + self.tokenizer.encode(code) + end

    def fingerprint(self) -> str:
        """Identifies the base weights (config.json and the weight files' names and sizes)."""
        return base_fingerprint(self.path)


def base_fingerprint(path: Path) -> str:
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def read_model_config(path: Path) -> ModelConfig:
    """The Llama ModelConfig of a base dir; BaseModelError for anything that is not a Llama causal LM."""
    if not path.is_dir():
        raise BaseModelError(f"--base {path}: no such directory; pass a local HF model dir (config.json, "
                             "*.safetensors, tokenizer files)")
    try:
        hf = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise BaseModelError(f"--base {path} has no config.json: it is not a Hugging Face model directory") from None
    except (OSError, ValueError) as e:
        raise BaseModelError(f"--base {path}/config.json is not valid JSON ({e})") from None
    archs = hf.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if not causal and (archs or hf.get("model_type") != "llama"):  # a bare Llama config: a causal LM by default
        raise BaseModelError(
            f"--base {path} is not a causal language model (architectures {archs}, model_type "
            f"{hf.get('model_type')!r}); fine-tuning needs a decoder-only *ForCausalLM checkpoint such as "
            "aiXcoder-7B or a lightcoder run's ckpt/step_N")
    try:
        cfg = config_from_hf(hf, path)
    except CheckpointError as e:
        raise BaseModelError(f"--base {path} is a causal LM lightcoder cannot run ({e}); only "
                             "Llama-architecture weights (LlamaForCausalLM) can be fine-tuned") from None
    if not (path / WEIGHTS_NAME).is_file() and not (path / WEIGHTS_INDEX_NAME).is_file():
        raise BaseModelError(f"--base {path} has no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME}); only "
                             "safetensors weights are supported (convert .bin weights with transformers first)")
    return cfg


def _fim_tokens(template: FimTemplate) -> tuple[str, ...]:
    return (template.prefix_token, template.suffix_token, template.middle_token)


def has_token(tokenizer, token: str) -> bool:
    try:
        tokenizer.token_to_id(token)
    except ValueError:
        return False
    return True


def choose_template(tokenizer, name: str, where: Path) -> FimTemplate:
    """The registry template for this tokenizer: detected ("auto") or named, checked against its vocabulary."""
    has = lambda token: has_token(tokenizer, token)  # noqa: E731
    families = [t for t in dict.fromkeys(TEMPLATES.values()) if all(has(tok) for tok in _fim_tokens(t))]
    if name == "auto":
        template = detect_template(has) if isinstance(tokenizer, ForeignTokenizer) else get_template("aixcoder")
        if all(has(tok) for tok in _fim_tokens(template)):
            return template
        raise BaseModelError(
            f"the tokenizer in {where} has no FIM tokens of a known family (none of "
            f"{', '.join(t.prefix_token for t in dict.fromkeys(TEMPLATES.values()))}); pass --template NAME "
            f"(one of {', '.join(sorted(TEMPLATES))}) naming the family whose FIM tokens it has, or add them "
            "to the tokenizer")
    template = get_template(name)
    missing = [tok for tok in _fim_tokens(template) if not has(tok)]
    if missing:
        hint = f"; it has {families[0].name}'s: pass --template {families[0].name}" if families else \
            "; it has no FIM tokens of any known family"
        raise BaseModelError(f"--template {name}: the tokenizer in {where} lacks {missing}{hint}")
    return template


def _load_tokenizer(path: Path, template_name: str):
    """load_tokenizer, except that a dir with both tokenizer.model and another family's tokenizer.json
    (CodeLlama) uses the tokenizer.json when a non-aiXcoder template is asked for."""
    try:
        tokenizer = load_tokenizer(path)
    except ValueError as e:
        raise BaseModelError(f"--base {path}: {e}") from None
    if isinstance(tokenizer, SentencePieceTokenizer) and (path / "tokenizer.json").is_file() and \
            (template_name not in ("auto", "aixcoder") or not has_token(tokenizer, "<AIX-SPAN-PRE>")):
        tokenizer = ForeignTokenizer(path / "tokenizer.json")
    return tokenizer


def open_base(path: str | Path, template: str = "auto") -> Base:
    """Check a base dir and pick its FIM format (module docstring); loads no weights."""
    path = Path(path).expanduser()
    cfg = read_model_config(path)
    tokenizer = _load_tokenizer(path, template)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise BaseModelError(f"--base {path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                             f"{cfg.vocab_size}; the tokenizer files belong to another model")
    chosen = choose_template(tokenizer, template, path)
    if isinstance(tokenizer, SentencePieceTokenizer) and chosen.name != "aixcoder":
        raise BaseModelError(f"--base {path}: a SentencePiece tokenizer.model is read with aiXcoder's layout only "
                             f"(its special tokens and stop rule); for --template {chosen.name} put the family's "
                             "tokenizer.json (and tokenizer_config.json) next to the weights")
    if isinstance(tokenizer, ForeignTokenizer):
        tokenizer.set_stop_tokens(chosen.stop_tokens)
    if tokenizer.eos_id is None:
        raise BaseModelError(f"--base {path}: tokenizer_config.json names no eos_token; add it (the token that "
                             "ends a document)")
    if chosen.name == "aixcoder":
        return Base(path, cfg, tokenizer, chosen, ExampleFormat(), tokenizer.bos_id)
    bos = tokenizer.token_to_id(chosen.bos_token) if chosen.bos_token else None
    doc_start = bos if bos is not None else tokenizer.eos_id
    end = tokenizer.token_to_id(CODELLAMA_EOT) if chosen.name == "codellama" and has_token(tokenizer, CODELLAMA_EOT) \
        else tokenizer.eos_id
    fmt = ExampleFormat(template=chosen, end_id=end, lead_ids=() if bos is not None else (doc_start,))
    return Base(path, cfg, tokenizer, chosen, fmt, doc_start)
