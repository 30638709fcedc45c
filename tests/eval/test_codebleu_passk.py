"""CodeBLEU parts against hand-computed values; pass@k against the closed form."""

import math
import random

import pytest

from lightcoder.eval.codebleu import (
    codebleu, dataflow_edges, dataflow_match, ngram_match, syntax_match, weighted_ngram_match,
)
from lightcoder.eval.metrics import pass_at_k

PRED, REF = "y = a + b + c", "y = a + b - c"
# 13a tokens: pred [y = a + b + c], ref [y = a + b - c]; matches per order 6/7, 4/6, 3/5, 2/4
HAND_BLEU = (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25


def test_ngram_match_is_hand_computed_bleu():
    assert ngram_match(PRED, REF) == pytest.approx(HAND_BLEU)
    # a 2-token prediction: orders 3 and 4 cannot be judged and are skipped, orders 1-2 match fully,
    # so only the brevity penalty exp(1 - 4/2) remains
    assert ngram_match("a b", "a b c d") == pytest.approx(math.exp(-1.0))
    assert ngram_match("a x", "a b c d") == 0.0  # no bigram matches: unsmoothed BLEU is 0
    # a 2-token reference has orders 1-2 only: one extra token costs precision, not everything
    assert ngram_match("return x", "return x") == 1.0
    assert ngram_match("return x ;", "return x") == pytest.approx((2 / 3 * 1 / 2) ** 0.5)
    # a 3-token prediction of a long reference: orders 1-3 judged (all exact), so only the brevity penalty
    assert ngram_match("a b c", "a b c d e") == pytest.approx(math.exp(1 - 5 / 3))


def test_weighted_ngram_weighs_keywords_five_to_one():
    # no keyword in either side: every unigram weighs 0.2, the precision is unchanged
    assert weighted_ngram_match(PRED, REF, "python") == pytest.approx(HAND_BLEU)
    # pred "return x if c else 0 + 1" vs ref "return y if c else 0 + 1": unigram hits weigh
    # return/if/else 1.0 and c/0/+/1 0.2 -> (3 + 0.8) / (3 + 1.0) = 0.95 instead of 7/8
    pred, ref = "return x if c else 0 + 1", "return y if c else 0 + 1"
    plain = ngram_match(pred, ref)
    weighted = weighted_ngram_match(pred, ref, "python")
    assert weighted == pytest.approx(plain * ((3.8 / 4.0) / (7 / 8)) ** 0.25)


def test_syntax_match_counts_shared_subtrees():
    # ref subtrees: (a + b), ((a + b) - c), assignment, expression_statement, module -> only (a + b) is in pred
    assert syntax_match(PRED, REF, "python") == pytest.approx(1 / 5)
    assert syntax_match(REF, REF, "python") == 1.0


def test_dataflow_edges_and_match_are_hand_computed():
    edges = dataflow_edges("a = 1\nb = a + c", "python")
    assert edges == {("var_0", "computedFrom", ()): 1, ("var_1", "computedFrom", ("var_0", "var_2")): 1,
                     ("var_0", "comesFrom", ("var_0",)): 1}
    # renaming variables keeps the data flow; changing where a value comes from breaks it
    assert dataflow_match("p = 1\nq = p + r", "a = 1\nb = a + c", "python") == 1.0
    # pred edges: a <- (), b <- (c): only "a <- ()" of the reference's three edges is there
    assert dataflow_match("a = 1\nb = c + 2", "a = 1\nb = a + c", "python") == pytest.approx(1 / 3)
    assert dataflow_match(PRED, REF, "python") == 1.0  # y computedFrom {a, b, c} either way


def test_codebleu_is_the_equal_weighted_sum():
    parts = codebleu(PRED, REF, "python")
    assert parts["codebleu"] == pytest.approx(0.25 * (HAND_BLEU + HAND_BLEU + 0.2 + 1.0))


@pytest.mark.parametrize("language,code", [
    ("python", "for i in range(n):\n    s += i\n"),
    ("java", "for (int i = 0; i < n; i++) { s += a[i]; }"),
    ("javascript", "for (let i = 0; i < n; i++) { s += a[i]; }"),
    ("cpp", "for (int i = 0; i < n; i++) { s += a[i]; }"),
])
def test_identical_code_scores_one_and_empty_prediction_zero(language, code):
    assert codebleu(code, code, language)["codebleu"] == pytest.approx(1.0)
    assert codebleu("", code, language)["codebleu"] == 0.0
    assert codebleu("", "", language)["codebleu"] == 1.0
    assert 0.0 < codebleu(code.replace("+=", "-="), code, language)["codebleu"] < 1.0


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="CodeBLEU supports"):
        codebleu("x", "x", "cobol")


def test_pass_at_k_matches_the_closed_form_on_random_inputs():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 60)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        closed = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)


def test_pass_at_k_edges():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 11 samples"):
        pass_at_k(10, 2, 11)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
