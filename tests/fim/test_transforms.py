import random

import pytest

from lightcoder.fim.spans import Span, structured_spans
from lightcoder.fim.transforms import (
    ntp_document,
    ntp_prompt,
    psm_document,
    psm_prompt,
    random_span,
    split,
    spm_document,
    spm_prompt,
)
from lightcoder.tokenizer.header import file_header
from lightcoder.tokenizer.special_tokens import (
    BOS,
    EOS,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    SENTENCEPIECE_SPELLING,
)

# The README's SFIM training examples, verbatim (research/aixcoder-7b.md §1.4), including its
# "<\s>" typo and its dropped newline between "0:" and the suffix.
README_SPM = (
    '<s>▁<AIX-SPAN-PRE>▁<AIX-SPAN-POST>        print("Hello World")\n▁<AIX-SPAN-MIDDLE># the file path '
    "is: test.py\n# the code file is written by Python\nfor i in range(20):\n    if i % 5 == 0:<\\s>"
)
README_PSM = (
    "<s>▁<AIX-SPAN-PRE># the file path is: test.py\n# the code file is written by Python\nfor i in "
    'range(20):\n    if ▁<AIX-SPAN-POST>        print("Hello World")\n▁<AIX-SPAN-MIDDLE>i % 5 == 0:<\\s>'
)
HEADER = "# the file path is: test.py\n# the code file is written by Python\n"
PREFIX = "for i in range(20):\n    if "
MIDDLE = "i % 5 == 0:"
SUFFIX = '        print("Hello World")\n'


def ours(readme: str) -> str:
    return readme.replace("\u2581", "").replace("<\\s>", "</s>")


def spelled(pieces: list[str]) -> str:
    """aiXcoder's own spelling of a piece list (sentinels with the leading U+2581)."""
    return "".join(SENTENCEPIECE_SPELLING.get(p, p) for p in pieces)


def test_readme_example_spm():
    assert file_header("test.py") == HEADER
    pieces = spm_document(HEADER, PREFIX, MIDDLE, SUFFIX)
    assert pieces == [BOS, FIM_PREFIX, FIM_SUFFIX, SUFFIX, FIM_MIDDLE, HEADER + PREFIX, MIDDLE, EOS]
    assert "".join(pieces) == ours(README_SPM)
    assert spelled(pieces) == README_SPM.replace("<\\s>", "</s>")


def test_readme_example_psm():
    pieces = psm_document(HEADER, PREFIX, MIDDLE, SUFFIX)
    assert pieces == [BOS, FIM_PREFIX, HEADER + PREFIX, FIM_SUFFIX, SUFFIX, FIM_MIDDLE, MIDDLE, EOS]
    assert "".join(pieces) == ours(README_PSM)
    assert spelled(pieces) == README_PSM.replace("<\\s>", "</s>")


def test_readme_example_from_sfim_span():
    code = 'for i in range(20):\n    if i % 5 == 0:\n        print("Hello World")\n'
    span = next(s for s in structured_spans(code, "Python") if code[s.start:s.end] == MIDDLE)
    prefix, middle, suffix = split(code, span)
    assert (prefix, middle) == (PREFIX, MIDDLE)
    # the README drops the newline between "0:" and the body; a real split keeps it
    assert suffix == "\n" + SUFFIX
    assert spm_document(HEADER, prefix, middle, suffix)[3] == "\n" + SUFFIX


def test_ntp_and_empty_pieces():
    assert ntp_document(HEADER, "x = 1\n") == [BOS, HEADER + "x = 1\n", EOS]
    assert ntp_document("", "") == [BOS, EOS]
    assert psm_document("", "", "m", "") == [BOS, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, "m", EOS]
    assert spm_document("", "", "", "s") == [BOS, FIM_PREFIX, FIM_SUFFIX, "s", FIM_MIDDLE, EOS]
    assert all(p for p in psm_document("", "", "", ""))


def test_prompts_are_documents_cut_before_the_middle():
    for header in ("", HEADER):
        psm = psm_document(header, PREFIX, MIDDLE, SUFFIX)
        assert psm_prompt(header, PREFIX, SUFFIX) == psm[: psm.index(FIM_MIDDLE) + 1]
        spm = spm_document(header, PREFIX, MIDDLE, SUFFIX)
        prompt = spm_prompt(header, PREFIX, SUFFIX)
        assert prompt == spm[:-2] and spm[-2] == MIDDLE
        assert ntp_prompt(header, PREFIX) == [BOS, header + PREFIX]
    assert ntp_prompt("", "") == [BOS]
    assert spm_prompt("", "", "") == [BOS, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE]


def test_split_round_trip_and_bounds():
    text = "héllo wörld 😀\n"
    for start in range(len(text) + 1):
        for end in range(start, len(text) + 1):
            prefix, middle, suffix = split(text, Span(start, end, "x"))
            assert prefix + middle + suffix == text and len(middle) == end - start
    for bad in (Span(-1, 2, "x"), Span(3, 2, "x"), Span(0, len(text) + 1, "x")):
        with pytest.raises(ValueError, match="outside a text"):
            split(text, bad)


def test_random_span_is_uniform_pair_of_cuts():
    text = "abcdefghij"
    rng = random.Random(0)
    spans = [random_span(text, rng) for _ in range(4000)]
    assert all(0 <= s.start <= s.end <= len(text) and s.kind == "random" for s in spans)
    assert random_span("", rng) == Span(0, 0, "random")
    # two uniform cuts over 11 positions: P(empty) = 1/11, E|X - Y| = n(n + 2) / (3(n + 1)) = 40/11
    empty = sum(s.start == s.end for s in spans) / len(spans)
    mean = sum(s.end - s.start for s in spans) / len(spans)
    assert abs(empty - 1 / 11) < 0.02 and abs(mean - 40 / 11) < 0.15
    assert random_span(text, random.Random(5)) == random_span(text, random.Random(5))
