"""The pack stage's config: `PackConfig` and its objective mix `MixConfig`, validated on construction.

Pure dataclasses and the constants they default to or validate against. packing.py, pack_context.py,
fim/ (mix.py, context.py, spans.py) and repo_order/strategies.py import them from here, so
`import lightcoder.config` loads no packer, tokenizer, numpy or tree-sitter code.

    PackConfig        windows, splits, file order within a repository, repository balance
    PackConfig.mix    the objective mix: NTP / FIM / SFIM shares, PSM / SPM, context or document level

Example: PackConfig(seq_len=1024, mix=MixConfig(level="document", ntp_rate=0.3))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from lightcoder.data.config import SPLITS

# ---------------------------------------------------------------- file order (repo_order/strategies.py)

MIX = "mix"  # pack.sampling value: draw a strategy per repository from pack.sampling_weights
# The keys of repo_order.strategies.STRATEGIES, in its order (tests check the two agree).
STRATEGY_NAMES: tuple[str, ...] = ("content", "path", "dependency", "random")
# aiXcoder publishes no proportions; research/aixcoder-7b.md §4.2 placeholders
DEFAULT_WEIGHTS: dict[str, float] = {"content": 0.3, "path": 0.3, "dependency": 0.3, "random": 0.1}


def check_sampling_weights(weights: dict[str, float]) -> None:
    """ValueError unless weights maps strategy names to weights >= 0 with a positive sum (TypeError or
    AttributeError when it is not a dict of numbers)."""
    unknown = [name for name in weights if name not in STRATEGY_NAMES]
    if unknown:
        raise ValueError(f"unknown sampling strategies {unknown}: use names from {', '.join(STRATEGY_NAMES)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"sampling weights must be >= 0 with a positive sum, got {weights}")


# ---------------------------------------------------------------- the objective mix (fim/)

LEVELS: tuple[str, ...] = ("context", "document")
SPAN_KINDS: tuple[str, ...] = ("line", "partial_line", "multi_line", "sfim", "random")  # fim/context.py
# context level: the share of FIM examples per span kind (fim/context.py). Editors mostly ask for one
# line (Cody: 87 % of suggestions), then blocks; SFIM nodes and random spans keep the paper's objectives.
# Measured (docs/ablation.md): moving weight from random and multi-line spans to lines raised the share of
# completions that end with </s> from 34 % to 71 % at equal compute (line 0.35 -> 0.55).
DEFAULT_SPAN_WEIGHTS = {"line": 0.55, "partial_line": 0.15, "multi_line": 0.05, "sfim": 0.2, "random": 0.05}
DEFAULT_MAX_CHARS = 2000  # SFIM / random middles longer than this are not drawn (fim/spans.py)
DEFAULT_WHOLE_NODE_RATE = 0.3  # SFIM: the share of spans that mask a whole node, not a child run


def check_span_weights(weights: dict) -> None:
    """ValueError naming the problem unless weights maps SPAN_KINDS to non-negative numbers, not all 0."""
    """ValueError naming the problem unless weights maps SPAN_KINDS to non-negative numbers, not all 0."""
    if not isinstance(weights, dict):
        raise ValueError(f"span weights must be a dict of {SPAN_KINDS} to numbers, got {weights!r}")
    unknown = [k for k in weights if k not in SPAN_KINDS]
    if unknown:
        raise ValueError(f"unknown span kind(s) {unknown}; choose from {SPAN_KINDS}")
    bad = [k for k, v in weights.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0]
    if bad or not any(v > 0 for v in weights.values()):
        raise ValueError(f"span weights must be non-negative numbers, at least one > 0, got {weights}")


@dataclass(kw_only=True)
class MixConfig:
    level: str = "context"  # "context": examples cut like the server's prompts; "document": aiXcoder's
    # Document level: the share of files that stay NTP; context level: the share of training tokens that
    # are NTP documents (every file is one; FIM examples add the rest). aiXcoder: README 30 % NTP, the
    # maintainers 0.4 (issue #17); 0.4 measured best here at context level (docs/ablation.md)
    ntp_rate: float = 0.4
    sfim_rate: float = 0.8  # document level: share of FIM documents that use SFIM when the file parses
    spm_rate: float = 0.5  # share of FIM documents / examples in SPM order (finetune.py: 0.5)
    max_middle_chars: int = DEFAULT_MAX_CHARS  # SFIM (and random) middles longer than this are not drawn
    whole_node_rate: float = DEFAULT_WHOLE_NODE_RATE  # SFIM: mask a whole node, not a child run
    sfim_partial_parse: bool = False  # SFIM from the clean subtrees of files with syntax errors
    span_weights: dict = field(default_factory=lambda: dict(DEFAULT_SPAN_WEIGHTS))  # context level
    max_middle_tokens: int = 0  # context level: longest middle in tokens; 0 = pack.seq_len // 4
    sticky_rate: float = 0.5  # context level: share of prompts cut at the server's sticky line anchors
    # context level: share of FIM examples cut as if the file ended with the definition the span is in
    # (fim/context.end_of_file_span): an empty suffix, code typed at the bottom of a file (HumanEval's last lines)
    end_of_file_rate: float = 0.1  # measured: docs/ablation.md, "End of file"
    # context level: each prompt's token budget is drawn log-uniformly from [min_prompt_tokens, what the
    # window leaves]: short prompts make cheap examples (more middles per step), long ones are what the
    # server sends (0 = always the most the window leaves)
    min_prompt_tokens: int = 32
    # context level: line and multi-line middles may end on a line that opens a block (`if a:` with its
    # body left in the suffix); false keeps those out, so "a line, then </s>" is never taught after a header
    line_span_headers: bool = True

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"MixConfig.level must be one of {LEVELS}, got {self.level!r}")
        check_span_weights(self.span_weights)
        for name in ("max_middle_tokens", "min_prompt_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"MixConfig.{name} must be an int >= 0, got {value!r}")
        for name in ("ntp_rate", "sfim_rate", "spm_rate", "whole_node_rate", "sticky_rate", "end_of_file_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"MixConfig.{name} must be a probability in [0, 1], got {value!r}")
        value = self.max_middle_chars
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"MixConfig.max_middle_chars must be a positive int (e.g. 2000), got {value!r}")
        for name in ("sfim_partial_parse", "line_span_headers"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MixConfig.{name} must be true or false, got {getattr(self, name)!r}")


@dataclass(kw_only=True)
class PackConfig:
    seq_len: int = 512  # tokens per window; the model sees seq_len - 1 inputs per example
    seed: int = 0
    sampling: str = MIX  # file order within a repository: "mix" or one of STRATEGY_NAMES
    sampling_weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))  # for "mix"
    mix: MixConfig = field(default_factory=MixConfig)
    splits: tuple[str, ...] = ("train", "valid")
    batch_files: int = 256  # files per batched tokenizer call
    export_jsonl: bool = False  # also write <split>.documents.jsonl (documents as text)
    # repository balance (repo_balance.py): shares of bytes ~ size ** temperature (1 = as found, 0 = equal)
    workers: int = 0  # processes cutting context-level FIM examples; 0 = all cores
    repo_temperature: float = 0.3
    max_repo_repeats: float = 4.0  # a small repository appears at most this many times per split

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        if self.seq_len < 2:
            raise ValueError(f"pack.seq_len must be >= 2 (inputs and targets), got {self.seq_len}")
        if self.sampling != MIX and self.sampling not in STRATEGY_NAMES:
            raise ValueError(f"pack.sampling {self.sampling!r} is unknown: use {MIX!r} (a per-repository draw "
                             f"from pack.sampling_weights) or one of {', '.join(STRATEGY_NAMES)}")
        try:
            check_sampling_weights(self.sampling_weights)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"pack.sampling_weights: {exc} (e.g. --pack.sampling_weights "
                             f"'{json.dumps(DEFAULT_WEIGHTS)}')") from None
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"pack.splits must be distinct names from {SPLITS}, got {self.splits}")
        if self.batch_files < 1:
            raise ValueError(f"pack.batch_files must be >= 1, got {self.batch_files}")
        if self.workers < 0:
            raise ValueError(f"pack.workers must be >= 0 (0 = all cores), got {self.workers}")
        if not 0.0 <= self.repo_temperature <= 1.0:
            raise ValueError(f"pack.repo_temperature must be in [0, 1] (1 = repositories as found, 0 = "
                             f"equal shares), got {self.repo_temperature}")
        if self.max_repo_repeats < 1.0:
            raise ValueError(f"pack.max_repo_repeats must be >= 1, got {self.max_repo_repeats}")
        if self.mix.level == "context" and self.mix.ntp_rate <= 0:
            raise ValueError("pack.mix.ntp_rate must be > 0 at level 'context' (FIM examples are drawn in "
                             "proportion to each file's NTP tokens); use pack.mix.level document for FIM-only files")
        if self.mix.max_middle_tokens >= self.seq_len - 2:
            raise ValueError(f"pack.mix.max_middle_tokens ({self.mix.max_middle_tokens}) must leave room for a "
                             f"prompt in pack.seq_len ({self.seq_len}); e.g. {self.seq_len // 4}")

    @property
    def num_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def middle_token_limit(self) -> int:
        """The longest context-level FIM middle in tokens (mix.max_middle_tokens, 0 = a quarter window)."""
        return self.mix.max_middle_tokens or self.seq_len // 4
