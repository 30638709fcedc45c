"""aiXcoder's document-level FIM: one document per file (§3.1, §3.3), drawn by the objective mix.

`MixConfig.level` (pack_config.py) picks how FIM examples are made. "context" (the default) cuts each example around
its span with the server's prompt builder (fim/context.py, packed by pack_context.py); "document" is
aiXcoder's whole-file transform below, for long-context models whose windows hold whole files.

Document level, per file: NTP with probability `ntp_rate`, else FIM. A FIM document uses SFIM (a syntax-aware span,
fim/spans.py) with probability `sfim_rate`, else a random character span (BigCode/Megatron
semantics: two uniform cut points in [0, len] per document, sorted). SFIM needs a parse: a file
whose language has no SFIM rules (fim/rules.py; such files are not parsed at all), no installed
grammar, a syntax error or no structure that fits falls back to random FIM and the Document says
so (`fell_back`, `fallback_reason`), so packing can count fallbacks per reason. With
`sfim_partial_parse` a file with a syntax error still gets SFIM from its clean subtrees (subtrees
containing ERROR/MISSING nodes are never chosen either way). Each FIM document is SPM with
probability `spm_rate`, else PSM. The header (path + language comment lines) starts the code in
every layout. Every Document records its objective, order, language and (SFIM) node type.

Example: make_document("x = 1\\n", "a/b.py", "Python", MixConfig(ntp_rate=1.0), rng).pieces
    -> ["<s>", "# the file path is: a/b.py\\n# the code file is written by Python\\nx = 1\\n", "</s>"]
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lightcoder.fim.spans import RULES, parse_source, sample_parsed_span
from lightcoder.fim.transforms import ntp_document, psm_document, random_span, split, spm_document
from lightcoder.languages import language_for_path
from lightcoder.pack_config import MixConfig
from lightcoder.tokenizer.header import file_header

OBJECTIVES: tuple[str, ...] = ("ntp", "fim", "sfim")
ORDERS: tuple[str, ...] = ("psm", "spm")
# Why SFIM fell back to random FIM: no fim/rules.py entry for the language (or no language), no
# tree-sitter grammar installed, a syntax error, or no structural span within max_middle_chars.
FALLBACK_REASONS: tuple[str, ...] = ("no_rules", "no_grammar", "syntax_error", "no_span")


@dataclass
class Document:
    pieces: list[str]  # special-token strings and text, see fim/transforms.py
    objective: str  # "ntp" | "fim" | "sfim"
    order: str  # "psm" | "spm" | "" (ntp)
    fell_back: bool  # SFIM was drawn but the file could not be parsed: random FIM instead
    fallback_reason: str = ""  # one of FALLBACK_REASONS when fell_back, else ""
    language: str = ""  # the file's language ("" when unknown)
    node_type: str = ""  # SFIM: the tree-sitter type of the node whose children were masked

    def text(self) -> str:
        """The document as one string, special tokens written inline (the JSONL export format)."""
        return "".join(self.pieces)


def make_document(
    text: str, path: str, language: str | None, cfg: MixConfig, rng: random.Random
) -> Document:
    """One training document for one file, drawn with `rng` (see module docstring).

    `language` None means: guess it from the path's extension.
    """
    language = language or language_for_path(path)
    header = file_header(path, language=language)
    if rng.random() < cfg.ntp_rate:
        return Document(ntp_document(header, text), "ntp", "", False, language=language or "")
    order = "spm" if rng.random() < cfg.spm_rate else "psm"
    span, objective, reason = None, "fim", ""
    if rng.random() < cfg.sfim_rate:
        span, reason = _sfim_span(text, language, cfg, rng)
        if span is not None:
            objective = "sfim"
    if span is None:
        span = random_span(text, rng)
    prefix, middle, suffix = split(text, span)
    layout = spm_document if order == "spm" else psm_document
    return Document(layout(header, prefix, middle, suffix), objective, order, bool(reason), reason,
                    language=language or "", node_type=span.kind if objective == "sfim" else "")


def _sfim_span(text: str, language: str | None, cfg: MixConfig, rng: random.Random):
    """(span, "") or (None, fallback reason); draws from rng only when a parse is usable."""
    if language not in RULES:
        return None, "no_rules"  # nothing to sample: skip the parse
    parsed = parse_source(text, language)
    if parsed is None:
        return None, "no_grammar"
    if parsed.has_error and not cfg.sfim_partial_parse:
        return None, "syntax_error"
    span = sample_parsed_span(parsed, rng, max_chars=cfg.max_middle_chars, whole_node_rate=cfg.whole_node_rate)
    if span is None:
        return None, "syntax_error" if parsed.has_error else "no_span"
    return span, ""
