"""`FinetuneConfig`: every knob of `lightcoder finetune`, validated on construction.

Sections take dotted overrides like the other commands (`--lora.r 16`, `--train.lr 1e-4`,
`--pack.seq_len 512`, `--split.heldout_fraction 0.3`, `--eval.general none`). The defaults sit next
to aiXcoder's `finetune.py` (research/aixcoder-7b.md §3.1); docs/finetune.md has the table.

Example: FinetuneConfig(base="aixcoder-7b-base", corpus=["~/src/myrepo"], method="lora")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lightcoder.data.config import DataConfig
from lightcoder.infer.penalties import check_cache_weight, check_penalties
from lightcoder.pack_config import PackConfig
from lightcoder.train.config import TrainConfig

METHODS = ("lora", "qlora", "full")
# HF Llama names of the projections aiXcoder's finetune.py adapts (all seven linear layers of a block)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GENERAL_SETS = ("stdlib", "none")  # or a path to a tasks.jsonl


@dataclass(kw_only=True)
class LoraSettings:
    r: int = 8  # finetune.py: 8
    alpha: float = 16.0  # finetune.py: peft's default (8), i.e. scale 1; ours scale 2
    dropout: float = 0.05  # finetune.py: peft's default (0)
    targets: tuple[str, ...] = LORA_TARGETS  # finetune.py: the same seven

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in LORA_TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"lora.targets must be a non-empty subset of {LORA_TARGETS}, got {self.targets}")


@dataclass(kw_only=True)
class SplitSettings:
    """Files of each repository, by a hash of (seed, path): held out for evaluation, for the
    validation loss, or trained on. Whole repositories never move: the point is the same codebase."""

    heldout_fraction: float = 0.2
    valid_fraction: float = 0.05
    seed: int = 0
    # Replay against forgetting: files of the base's own training data (the train split of a curated
    # corpus dir, e.g. a lightcoder run's data/) mixed into training, replay_fraction x the user's train bytes.
    replay: str = ""
    replay_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("heldout_fraction", "valid_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"split.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.heldout_fraction + self.valid_fraction >= 0.9:
            raise ValueError("split.heldout_fraction + split.valid_fraction must stay < 0.9 (files left to train on)")
        if not 0.0 <= self.replay_fraction <= 10.0:
            raise ValueError(f"split.replay_fraction must be in [0, 10], got {self.replay_fraction}")
        if self.replay_fraction > 0 and not self.replay:
            raise ValueError("split.replay_fraction > 0 needs split.replay: the curated corpus dir of the base's "
                             "training data (a lightcoder run's data/)")


@dataclass(kw_only=True)
class FinetuneEvalSettings:
    enabled: bool = True
    per_type: int = 16  # tasks per FIM-Eval task type from the held-out files (7 types)
    general: str = "stdlib"  # forgetting: "stdlib" (tasks from this interpreter's stdlib), a tasks.jsonl, "none"
    general_per_type: int = 8
    max_new_tokens: int = 96
    mode: str = "spm"  # prompt order where the template has it (aiXcoder: spm)
    max_context_chars: int = 4096
    seed: int = 0
    # decoding of the before/after scores (infer/penalties.py, infer/ngram_cache.py); 0 = plain greedy, as
    # aiXcoder's script. The demo passes its quickstart base's eval.frequency_penalty and eval.cache_weight,
    # the decoding that base was measured with
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    cache_weight: float = 0.0

    def __post_init__(self) -> None:
        check_penalties(self.frequency_penalty, self.presence_penalty, prefix="eval.")
        check_cache_weight(self.cache_weight, prefix="eval.")
        for name in ("per_type", "general_per_type", "max_new_tokens", "max_context_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name} must be >= 1, got {getattr(self, name)}")
        if self.mode not in ("spm", "psm"):
            raise ValueError(f"eval.mode must be spm or psm, got {self.mode!r}")
        if not self.general:
            raise ValueError("eval.general must be 'stdlib', 'none' or a path to a tasks.jsonl")


def _data_defaults() -> DataConfig:
    # one --corpus path = one repository; every file stays in the corpus (split.* holds files out)
    return DataConfig(repo_layout="root", valid_fraction=0.0, test_fraction=0.0)


def _pack_defaults() -> PackConfig:
    return PackConfig(seq_len=1024, splits=("train", "valid"))  # finetune.py: max_seq_length 1024


def _train_defaults() -> TrainConfig:
    # LoRA: 2e-4 (finetune.py used 2e-6, which barely moves an adapter in its 100 steps)
    # plain cross-entropy and AdamW as aiXcoder's finetune.py (stop_loss_weight 1: the demo in docs/finetune.md)
    return TrainConfig(lr=2e-4, min_lr=2e-5, warmup_steps=10, weight_decay=0.0, batch_size=4,
                       eval_every=50, ckpt_every=100, export_hf="final", stop_loss_weight=1.0, optimizer="adamw")


@dataclass(kw_only=True)
class FinetuneConfig:
    base: str = ""  # HF causal-LM dir (Llama architecture) with its tokenizer files
    corpus: list[str] = field(default_factory=list)  # directories, git repositories, archives
    method: str = "lora"
    template: str = "auto"  # FIM template: detected from the tokenizer's special tokens, or a registry name
    lora: LoraSettings = field(default_factory=LoraSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    data: DataConfig = field(default_factory=_data_defaults)
    pack: PackConfig = field(default_factory=_pack_defaults)
    train: TrainConfig = field(default_factory=_train_defaults)
    eval: FinetuneEvalSettings = field(default_factory=FinetuneEvalSettings)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        if "train" not in self.pack.splits:
            raise ValueError("pack.splits must include train")


# What a finished stage was built from: a rerun with other values here is refused (a budget or eval
# change is not: training resumes, evaluation reruns).
STAGE_KEYS = {
    "data": ("base", "corpus", "data"),
    "split": ("split",),
    "shards": ("template", "pack"),
    "ckpt": ("method", "lora", "train.lr", "train.min_lr", "train.batch_size", "train.seed",
             "train.weight_decay", "train.warmup_steps", "train.fim_prompt_loss", "train.document_mask",
             "train.optimizer"),
}


def stage_values(cfg: FinetuneConfig, stage: str) -> dict:
    """The config values a stage's output depends on (STAGE_KEYS), as JSON-ready data."""
    full = json_ready(cfg)
    out = {}
    for key in STAGE_KEYS[stage]:
        node = full
        for part in key.split("."):
            node = node[part]
        out[key] = node
    if stage == "data":  # how the work is spread does not change the corpus
        out["data"] = {k: v for k, v in out["data"].items() if k not in ("workers", "engine")}
    return out


def json_ready(cfg) -> dict:
    import json

    return json.loads(json.dumps(dataclasses.asdict(cfg)))
