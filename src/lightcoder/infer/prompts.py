"""Completion prompts in aiXcoder's formats (research/aixcoder-7b.md §1.4), cut to a token budget.

    NTP (suffix == ""): <s> H+P
    SPM (default):      <s> <AIX-SPAN-PRE> <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> H+P
    PSM:                <s> <AIX-SPAN-PRE> H+P <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE>

H is the file header (path and language comment lines). Truncation keeps the header, the END of the
prefix (the code right before the cursor) and the START of the suffix; each side gets half of the
budget left after the special tokens and the header, and a side that needs less gives the rest to
the other. Text is cut at token boundaries (whole characters) and re-encoded; special tokens are
never cut. A kept suffix may be empty: the prompt stays in FIM form.

Example: build_prompt(tok, prefix="def f(x):\\n    return ", suffix="\\n", path="a.py", cfg=PromptConfig())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lightcoder.fim.transforms import ntp_prompt, psm_prompt, spm_prompt
from lightcoder.tokenizer.header import file_header

MODES = ("spm", "psm")
_MAX_CHARS_PER_TOKEN = 32  # generous: code BPE averages ~3.3 chars per token


class PromptTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def encode_pieces(self, pieces: list[str]) -> list[int]: ...


@dataclass(kw_only=True)
class PromptConfig:
    mode: str = "spm"  # FIM layout when there is a suffix: "spm" (aiXcoder's default) or "psm"
    max_prompt_tokens: int = 960  # whole prompt, special tokens and header included
    include_path: bool = True  # header with the path line; False = language line only (FIM-Eval PSM)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"PromptConfig.mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.max_prompt_tokens, int) or self.max_prompt_tokens <= 0:
            raise ValueError(f"PromptConfig.max_prompt_tokens must be a positive int, got {self.max_prompt_tokens!r}")


def layout(header: str, prefix: str, suffix: str, mode: str, *, fim: bool) -> list[str]:
    """The prompt's pieces: NTP unless fim, else the FIM layout of `mode` (suffix may be empty)."""
    if not fim:
        return ntp_prompt(header, prefix)
    return spm_prompt(header, prefix, suffix) if mode == "spm" else psm_prompt(header, prefix, suffix)


def split_budget(budget: int, n_prefix: int, n_suffix: int) -> tuple[int, int]:
    """Tokens to keep of (prefix, suffix): half each, a side's unused share goes to the other.

    Example: split_budget(10, 20, 2) -> (8, 2); split_budget(10, 20, 20) -> (5, 5)
    """
    if n_prefix + n_suffix <= budget:
        return n_prefix, n_suffix
    suffix_share = budget // 2
    prefix_share = budget - suffix_share  # the prefix gets the odd token: it matters more
    if n_suffix < suffix_share:
        prefix_share = budget - n_suffix
    elif n_prefix < prefix_share:
        suffix_share = budget - n_prefix
    return min(n_prefix, prefix_share), min(n_suffix, suffix_share)


def build_prompt(tokenizer: PromptTokenizer, *, prefix: str, suffix: str = "", path: str = "",
                 cfg: PromptConfig) -> list[int]:
    """Token ids of the prompt for completing at the cursor between prefix and suffix."""
    header = file_header(path, include_path=cfg.include_path) if path else ""
    fim = suffix != ""
    fixed = len(tokenizer.encode_pieces(layout(header, "", "", cfg.mode, fim=fim)))  # special tokens + header
    budget = cfg.max_prompt_tokens - fixed
    if budget <= 0:
        raise ValueError(
            f"PromptConfig.max_prompt_tokens ({cfg.max_prompt_tokens}) leaves no room for code after the "
            f"{fixed} tokens of special tokens and header; raise it"
        )
    # Text farther from the cursor than any budget-sized run of tokens can reach is never kept: skip it.
    limit = _MAX_CHARS_PER_TOKEN * budget
    prefix, suffix = prefix[max(0, len(prefix) - limit):], suffix[:limit]
    prefix_ids, suffix_ids = tokenizer.encode(prefix), tokenizer.encode(suffix)
    # Re-encoding a cut text can merge differently at the cut or the header seam: shrink until it fits.
    while budget > 0:
        n_prefix, n_suffix = split_budget(budget, len(prefix_ids), len(suffix_ids))
        kept_prefix = prefix if n_prefix == len(prefix_ids) else _tail_text(tokenizer, prefix, prefix_ids, n_prefix)
        kept_suffix = suffix if n_suffix == len(suffix_ids) else _head_text(tokenizer, suffix, suffix_ids, n_suffix)
        ids = tokenizer.encode_pieces(layout(header, kept_prefix, kept_suffix, cfg.mode, fim=fim))
        if len(ids) <= cfg.max_prompt_tokens:
            return ids
        budget -= len(ids) - cfg.max_prompt_tokens
    raise ValueError(f"cannot fit the prompt into PromptConfig.max_prompt_tokens={cfg.max_prompt_tokens}; raise it")


def _tail_text(tokenizer: PromptTokenizer, text: str, ids: list[int], n: int) -> str:
    """The longest suffix of text spelled by at most the last n tokens (whole characters only)."""
    for start in range(len(ids) - n, len(ids) + 1):
        tail = tokenizer.decode(ids[start:]) if start < len(ids) else ""
        if text.endswith(tail):  # fails only when the cut splits a multi-byte character
            return tail
    return ""


def _head_text(tokenizer: PromptTokenizer, text: str, ids: list[int], n: int) -> str:
    """The longest prefix of text spelled by at most the first n tokens (whole characters only)."""
    for end in range(n, -1, -1):
        head = tokenizer.decode(ids[:end]) if end else ""
        if text.startswith(head):
            return head
    return ""
