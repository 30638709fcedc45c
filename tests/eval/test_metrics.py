import math

import pytest

from lightcoder.eval.metrics import (
    TOTAL,
    bleu4,
    edit_similarity,
    exact_match,
    score_one,
    summarize,
    syntax_valid,
    tokenize_13a,
)


def test_exact_match_strips_both_sides_only():
    assert exact_match("  x = 1\n", "x = 1")
    assert exact_match("", "\n  \n")  # FIM-Eval "empty" tasks: a whitespace middle matches ""
    assert not exact_match("x=1", "x = 1")  # no normalisation inside the string
    assert not exact_match("x = 1\ny = 2", "x = 1")


def test_edit_similarity_worked_values():
    assert edit_similarity("abc", "abd") == pytest.approx(200 / 3)  # 1 edit / max len 3
    assert edit_similarity("kitten", "sitting") == pytest.approx(100 * (1 - 3 / 7))
    assert edit_similarity("", "") == 100.0
    assert edit_similarity("", "abc") == 0.0
    assert edit_similarity(" abc \n", "abc") == 100.0


def test_tokenize_13a():
    assert tokenize_13a("x = f(a.b, 1.5);") == ["x", "=", "f", "(", "a", ".", "b", ",", "1.5", ")", ";"]
    assert tokenize_13a("a\nb-\nc") == ["a", "bc"]  # "-\n" joins, newlines are spaces


def test_bleu4_worked_values():
    # 3 reference tokens -> max order 3; precisions 3/4, 2/3, 1/2; hyp longer -> no brevity penalty
    assert bleu4("x = 1;", "x = 1") == pytest.approx(100 * (0.25 ** (1 / 3)))
    # 5 tokens each: precisions 4/5, 3/4, 2/3, 1/2
    assert bleu4("a b c d e", "a b c d f") == pytest.approx(100 * 0.2 ** 0.25)
    # all n-grams match, hyp 6 tokens vs ref 8: brevity penalty exp(1 - 8/6)
    assert bleu4("a b c d e f", "a b c d e f g h") == pytest.approx(100 * math.exp(1 - 8 / 6))
    # 3 hyp tokens cannot form a 4-gram: unsmoothed BLEU is 0
    assert bleu4("a b c", "a b c d") == 0.0


def test_bleu4_edge_rules():
    assert bleu4(" same ", "same") == 100.0
    assert bleu4("", "") == 100.0  # exact match first, as FIM-Eval
    assert bleu4("", "x") == 0.0
    assert bleu4("x", "") == 0.0


def test_score_one_lengths_follow_fim_eval():
    row = score_one(" pass\n", "pass\n")
    assert row == {"em": True, "es": 100.0, "bleu": 100.0, "pred_len": 4, "ref_len": 5}


def test_summarize_means_per_type_and_total():
    rows = [
        {"task_type": "a", "em": True, "es": 100.0, "bleu": 100.0, "pred_len": 4, "ref_len": 4},
        {"task_type": "a", "em": False, "es": 50.0, "bleu": 0.0, "pred_len": 2, "ref_len": 6},
        {"task_type": "b", "em": False, "es": 0.0, "bleu": 30.0, "pred_len": 0, "ref_len": 8},
    ]
    table = summarize(rows)
    assert list(table) == ["a", "b", TOTAL]
    assert table["a"] == {"n": 2, "em": 50.0, "es": 75.0, "bleu": 50.0, "pred_len": 3.0, "ref_len": 5.0,
                          "len_ratio": 0.6, "stop_rate": None, "syntax": None, "bpb": None}
    assert table[TOTAL]["n"] == 3
    assert table[TOTAL]["em"] == pytest.approx(100 / 3)
    assert table[TOTAL]["es"] == pytest.approx(50.0)
    assert table[TOTAL]["ref_len"] == pytest.approx(6.0)
    assert summarize([])[TOTAL]["n"] == 0


def test_summarize_rates_and_bits_per_byte():
    rows = [
        {"task_type": "a", "em": True, "es": 100.0, "bleu": 100.0, "pred_len": 4, "ref_len": 4,
         "stopped": True, "syntax_ok": True, "bits": 8.0, "middle_bytes": 4},
        {"task_type": "a", "em": False, "es": 50.0, "bleu": 0.0, "pred_len": 8, "ref_len": 4,
         "stopped": False, "syntax_ok": None, "bits": 24.0, "middle_bytes": 4},
    ]
    a = summarize(rows)["a"]
    assert a["stop_rate"] == 50.0 and a["len_ratio"] == 1.5
    assert a["syntax"] == 100.0  # None (no grammar) is left out, not counted as a failure
    assert a["bpb"] == pytest.approx(32.0 / 8)  # total bits over total bytes


def test_syntax_valid_parses_the_whole_file_around_the_completion():
    assert syntax_valid("def f():\n    return ", "1", "\n", "Python") is True
    assert syntax_valid("def f():\n    return ", "(1", "\n", "Python") is False
    assert syntax_valid("x", "y", "z", "NoSuchLanguage") is None


def test_syntax_is_not_judged_where_the_cut_context_breaks_the_parse_whatever_the_middle():
    """A task cut inside a call (its opening bracket fell before the 4k-character prefix) fails with the
    reference too: it is left out (None) rather than counted as a failure for every model."""
    prefix, suffix = "    1,\n", "    2,\n)\nz = 3\n"  # the line holding "f(" was cut off
    assert syntax_valid(prefix, "    a,\n", suffix, "Python") is False  # without a reference: fails for all
    assert syntax_valid(prefix, "    a,\n", suffix, "Python", reference="    b,\n") is None
    # the same hole with its context intact is judged
    assert syntax_valid("x = f(\n", "    a,\n", ")\n", "Python", reference="    1,\n") is True
    assert syntax_valid("x = f(\n", "    a(,\n", ")\n", "Python", reference="    1,\n") is False
