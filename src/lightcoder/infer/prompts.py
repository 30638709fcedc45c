"""Completion prompts in aiXcoder's formats (research/aixcoder-7b.md §1.4), cut to a token budget.

    NTP (no suffix):    <s> H+P
    SPM (default):      <s> <AIX-SPAN-PRE> <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> H+P
    PSM:                <s> <AIX-SPAN-PRE> H+P <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE>

H is the file header (path and language comment lines). Truncation keeps the header, the END of the
prefix (the code right before the cursor) and the START of the suffix; each side gets half of the
budget left after the special tokens and the header, and a side that needs less gives the rest to
the other. Text is cut at token boundaries (whole characters) and re-encoded; special tokens are
never cut. A kept suffix may be empty: the prompt stays in FIM form.

An empty suffix means plain continuation (NTP, aiXcoder's inference and NL2Code) unless the request
is an infilling one (`fim=True`: llama.cpp's /infill, an OpenAI request that sends `suffix`, the FIM
benchmarks): the cursor at the end of a file is still a hole to fill, and the FIM form with an
empty suffix says so (aiXcoder's document-level FIM made such prompts when a span ended its file).

Keystroke-stable cuts (`sticky_lines`, for prefix-KV reuse): an editor asks again on every keystroke
with a prefix one character longer. A cut that followed the budget exactly would move the start of
the kept prefix on every keystroke and invalidate the whole cached prompt after it. Instead the
prefix is cut at a line whose number is a multiple of `sticky_lines` (and the suffix ends at one),
so the cut moves once every few lines of typing; the price is up to that many lines of budget.

Other model families (StarCoder, DeepSeek-Coder, Qwen2.5-Coder, CodeLlama) use their own FIM
template (infer/templates.py); cross-file snippets go first, within `max_context_tokens`.

Example: build_prompt(tok, prefix="def f(x):\\n    return ", suffix="\\n", path="a.py", cfg=PromptConfig())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from collections.abc import Sequence

from lightcoder.fim.transforms import ntp_prompt, psm_prompt, spm_prompt
from lightcoder.infer.templates import TEMPLATES, FimTemplate
from lightcoder.tokenizer.header import file_header

MODES = ("spm", "psm")
_MAX_CHARS_PER_TOKEN = 32  # generous: code BPE averages ~3.3 chars per token
_FAST_CHARS_PER_TOKEN = 6  # first try: enough for almost all code
_CUT_MARGIN = 16  # tokens next to a window's cut that may differ from the whole text's


class PromptTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def encode_pieces(self, pieces: list[str]) -> list[int]: ...


@dataclass(kw_only=True)
class PromptConfig:
    mode: str = "spm"  # FIM layout when there is a suffix: "spm" (aiXcoder's default) or "psm"
    max_prompt_tokens: int = 960  # whole prompt, special tokens and header included
    include_path: bool = True  # header with the path line; False = language line only (FIM-Eval PSM)
    max_context_tokens: int = 0  # budget for cross-file snippets (inside max_prompt_tokens); 0 = none
    sticky_lines: int = 0  # cut prefix/suffix at multiples of this many lines (0 = exact cuts)

    def __post_init__(self) -> None:
        if self.max_context_tokens < 0 or self.sticky_lines < 0:
            raise ValueError("PromptConfig.max_context_tokens and sticky_lines must be >= 0")
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


def template_layout(template: FimTemplate, header: str, prefix: str, suffix: str, mode: str, *,
                    fim: bool) -> list[str]:
    if not fim:
        return template.ntp_pieces(prefix, header=header)
    return template.fim_pieces(prefix, suffix, mode=mode if mode in template.modes else None, header=header)


def context_ids(tokenizer: PromptTokenizer, template: FimTemplate, snippets: Sequence[tuple[str, str]],
                budget: int) -> list[int]:
    """Ids of the cross-file snippets (most relevant first) that fit the budget, in reverse order so
    the most relevant one sits closest to the cursor's prompt."""
    kept: list[list[int]] = []
    used = 0
    for snippet in snippets:
        ids = tokenizer.encode_pieces(template.context_pieces([snippet]))
        if used + len(ids) > budget:
            continue
        kept.append(ids)
        used += len(ids)
    return [i for ids in reversed(kept) for i in ids]


def build_prompt(tokenizer: PromptTokenizer, *, prefix: str, suffix: str = "", path: str = "",
                 cfg: PromptConfig, template: FimTemplate | None = None,
                 context: Sequence[tuple[str, str]] = (), fim: bool | None = None) -> list[int]:
    """Token ids of the prompt for completing at the cursor between prefix and suffix.

    template None = aiXcoder's formats; context = (path, code) snippets placed before the prompt;
    fim None = FIM form when the suffix is not empty (True: always, False: never).
    """
    fim = suffix != "" if fim is None else fim
    if suffix and not fim:
        raise ValueError("fim=False needs an empty suffix: plain continuation has no place for one")
    if template is None or template.name == "aixcoder":
        header = file_header(path, include_path=cfg.include_path) if path else ""
        lay = lambda h, p, s, m, fim: layout(h, p, s, m, fim=fim)  # noqa: E731
        template = TEMPLATES["aixcoder"]
    else:
        header = ""  # the other families were not trained with aiXcoder's header lines
        lay = lambda h, p, s, m, fim: template_layout(template, h, p, s, m, fim=fim)  # noqa: E731
    ctx = context_ids(tokenizer, template, context, min(cfg.max_context_tokens, cfg.max_prompt_tokens // 2)) \
        if context and cfg.max_context_tokens else []
    ids = _build_main(tokenizer, lay, header, prefix, suffix, cfg, cfg.max_prompt_tokens - len(ctx), fim)
    return ctx + ids


def _build_main(tokenizer, lay, header: str, prefix: str, suffix: str, cfg: PromptConfig, max_tokens: int,
                fim: bool) -> list[int]:
    full_prefix, full_suffix = prefix, suffix
    fixed = len(tokenizer.encode_pieces(lay(header, "", "", cfg.mode, fim)))  # special tokens + header
    budget = max_tokens - fixed
    if budget <= 0:
        raise ValueError(
            f"the prompt budget ({max_tokens} tokens) leaves no room for code after the {fixed} tokens of special "
            f"tokens and header" + (f" (the header holds the file path, {len(header)} characters here: send a "
                                    "shorter path, or" if header else " (") +
            " raise the budget: `serve --max-prompt-tokens`, `--eval.max_prompt_tokens`)"
        )
    # Text farther from the cursor than any budget-sized run of tokens can reach is never kept: skip it.
    # Try a tight window first (code averages ~3.3 chars per token); widen only when the window
    # holds too few tokens to fill the budget. A cut changes tokens only next to it, so the last
    # `budget` tokens of a window with a margin more than that are those of the whole text.
    for chars_per_token in (_FAST_CHARS_PER_TOKEN, _MAX_CHARS_PER_TOKEN):
        limit = chars_per_token * budget
        prefix, suffix = full_prefix[max(0, len(full_prefix) - limit):], full_suffix[:limit]
        prefix_ids, suffix_ids = tokenizer.encode(prefix), tokenizer.encode(suffix)
        if (prefix == full_prefix or len(prefix_ids) >= budget + _CUT_MARGIN) and \
                (suffix == full_suffix or len(suffix_ids) >= budget + _CUT_MARGIN):
            break
    # Re-encoding a cut text can merge differently at the cut or the header seam: shrink until it fits.
    while budget > 0:
        n_prefix, n_suffix = split_budget(budget, len(prefix_ids), len(suffix_ids))
        kept_prefix = prefix if n_prefix == len(prefix_ids) else _tail_text(tokenizer, prefix, prefix_ids, n_prefix)
        kept_suffix = suffix if n_suffix == len(suffix_ids) else _head_text(tokenizer, suffix, suffix_ids, n_suffix)
        if cfg.sticky_lines:
            if kept_prefix != full_prefix:
                kept_prefix = _sticky_tail(full_prefix, len(full_prefix) - len(kept_prefix), cfg.sticky_lines)
            if kept_suffix != full_suffix:
                kept_suffix = _sticky_head(full_suffix, len(kept_suffix), cfg.sticky_lines)
        ids = tokenizer.encode_pieces(lay(header, kept_prefix, kept_suffix, cfg.mode, fim))
        if len(ids) <= max_tokens:
            return ids
        budget -= len(ids) - max_tokens
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


def _sticky_tail(text: str, start: int, every: int) -> str:
    """text[cut:] for the first line start at or after `start` whose line number is a multiple of every.

    Example: _sticky_tail("a\\nb\\nc\\nd\\n", 1, 2) -> "c\\nd\\n" (line 2 is the first anchor after char 1)
    """
    line = text.count("\n", 0, start)  # 0-based line of char `start`
    pos = text.rfind("\n", 0, start) + 1  # start of that line
    target = line if pos == start else line + 1
    target = -(-target // every) * every
    while line < target:
        nxt = text.find("\n", pos)
        if nxt < 0:
            return text[start:]
        pos, line = nxt + 1, line + 1
    return text[pos:]


def _sticky_head(text: str, end: int, every: int) -> str:
    """text[:cut] ending at the last line end at or before `end` whose line count is a multiple of every."""
    lines = text.count("\n", 0, end)
    target = lines // every * every
    if target == 0:
        return text[:end]
    pos = -1
    for _ in range(target):
        pos = text.find("\n", pos + 1)
    return text[:pos + 1]
