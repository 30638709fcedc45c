"""Cut a text at a span and lay out NTP / PSM / SPM documents and prompts (aiXcoder §1.4, §3.1).

A document is a list of *pieces*: a piece equal to a special-token string (tokenizer/special_tokens)
is that token, anything else is literal text (`Tokenizer.encode_pieces` turns pieces into ids).
H is the file header (two comment lines, tokenizer/header.py), P/M/S prefix/middle/suffix:

    NTP: <s> H+code </s>
    PSM: <s> <AIX-SPAN-PRE> H+P <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> M </s>
    SPM: <s> <AIX-SPAN-PRE> <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> H+P M </s>

In SPM the header sits after MIDDLE, at the start of the prefix, so the model reads straight on
from prefix into middle; aiXcoder's default inference mode. Prompts are the same layouts cut right
before the middle. Empty text pieces are dropped, so every piece is either a token or non-empty.
Prefix, middle and suffix are always separate pieces (tokenised separately; see spm_document).
"""

from __future__ import annotations

import random

from lightcoder.fim.spans import Span
from lightcoder.tokenizer.special_tokens import BOS, EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX


def _pieces(*pieces: str) -> list[str]:
    return [p for p in pieces if p]


def split(text: str, span: Span) -> tuple[str, str, str]:
    """(prefix, middle, suffix) of `text` cut at the span's character offsets.

    Example: split("abcdef", Span(2, 4, "x")) -> ("ab", "cd", "ef")
    """
    if not 0 <= span.start <= span.end <= len(text):
        raise ValueError(f"span [{span.start}, {span.end}) is outside a text of {len(text)} chars")
    return text[: span.start], text[span.start : span.end], text[span.end :]


def random_span(text: str, rng: random.Random) -> Span:
    """Random character-level FIM span: two uniform cut points in [0, len], sorted (aiXcoder RandomFIM).

    Example: random_span("abcdef", rng) -> Span(1, 4, "random") (middle "bcd"); may be empty.
    """
    a, b = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))))
    return Span(a, b, "random")


def ntp_document(header: str, code: str) -> list[str]:
    """<s> H+code </s>. Example: ntp_document("# h\\n", "x = 1\\n") -> ["<s>", "# h\\nx = 1\\n", "</s>"]"""
    return _pieces(BOS, header + code, EOS)


def psm_document(header: str, prefix: str, middle: str, suffix: str) -> list[str]:
    """<s> <AIX-SPAN-PRE> H+P <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> M </s>.

    Example: psm_document("", "a", "b", "c") -> ["<s>", PRE, "a", POST, "c", MIDDLE, "b", "</s>"]
    """
    return _pieces(BOS, FIM_PREFIX, header + prefix, FIM_SUFFIX, suffix, FIM_MIDDLE, middle, EOS)


def spm_document(header: str, prefix: str, middle: str, suffix: str) -> list[str]:
    """<s> <AIX-SPAN-PRE> <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> H+P M </s>.

    H+P and M are separate pieces, so they are tokenised separately: a BPE token never spans the
    prefix/middle cut, exactly as at inference, where the prompt ends at P (an encode of H+P+M in
    one call could merge the last prefix chars with the first middle chars into one token that
    no prompt ever ends with).
    Example: spm_document("", "a", "b", "c") -> ["<s>", PRE, POST, "c", MIDDLE, "a", "b", "</s>"]
    """
    return _pieces(BOS, FIM_PREFIX, FIM_SUFFIX, suffix, FIM_MIDDLE, header + prefix, middle, EOS)


def ntp_prompt(header: str, prefix: str) -> list[str]:
    """<s> H+P -> the model continues the code. Example: ntp_prompt("", "def") -> ["<s>", "def"]"""
    return _pieces(BOS, header + prefix)


def psm_prompt(header: str, prefix: str, suffix: str) -> list[str]:
    """<s> <AIX-SPAN-PRE> H+P <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> -> the model writes M </s>.

    Example: psm_prompt("", "a", "c") -> ["<s>", PRE, "a", POST, "c", MIDDLE]
    """
    return _pieces(BOS, FIM_PREFIX, header + prefix, FIM_SUFFIX, suffix, FIM_MIDDLE)


def spm_prompt(header: str, prefix: str, suffix: str) -> list[str]:
    """<s> <AIX-SPAN-PRE> <AIX-SPAN-POST> S <AIX-SPAN-MIDDLE> H+P -> the model writes M </s>.

    Example: spm_prompt("", "a", "c") -> ["<s>", PRE, POST, "c", MIDDLE, "a"]
    """
    return _pieces(BOS, FIM_PREFIX, FIM_SUFFIX, suffix, FIM_MIDDLE, header + prefix)
