"""Completion metrics, as aiXcoder's FIM-Eval computes them (research/aixcoder-7b.md §6.3).

Pure functions of (prediction, reference) strings; no I/O, no model.

- exact_match: `pred.strip() == ref.strip()` (FIM-Eval `run_evaluate.py`; no other normalisation).
- edit_similarity: Levenshtein normalized similarity of the stripped strings, 0..100 (the ES column
  of CrossCodeEval-style tables; both empty counts as 100).
- bleu4: FIM-Eval's sentence BLEU-4 on the sacreBLEU "13a" tokens, 0..100: no smoothing, the maximum
  n-gram order drops to the reference's token count when it has fewer than 4 tokens, 100 on an exact
  match and 0 when either stripped string is empty.
- lengths: FIM-Eval's "Len pred/ref" is the mean CHARACTER length of the *stripped* prediction and
  the *unstripped* reference (that asymmetry is in their script; we copy it so numbers compare).

`summarize(results)` turns per-task rows into the per-type table: means, EM/ES/BLEU in percent.
CodeBLEU lives in codebleu.py; `pass_at_k` is the unbiased pass@k estimator of Chen et al. (2021).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from rapidfuzz.distance import Levenshtein

TOTAL = "total"  # the key of the all-tasks row in summarize()


def exact_match(pred: str, ref: str) -> bool:
    """FIM-Eval exact match: equal after stripping surrounding whitespace.

    Example: exact_match("  x = 1\n", "x = 1") -> True
    """
    return pred.strip() == ref.strip()


def edit_similarity(pred: str, ref: str) -> float:
    """Levenshtein similarity of the stripped strings in 0..100: 100 * (1 - dist / max(len)).

    Example: edit_similarity("abc", "abd") -> 66.67 (one substitution in three characters)
    """
    pred, ref = pred.strip(), ref.strip()
    if not pred and not ref:
        return 100.0
    return 100.0 * Levenshtein.normalized_similarity(pred, ref)


# ---- BLEU-4 (sacreBLEU "13a" tokenizer + the FIM-Eval sentence-level variant) ----

# mteval-v13a punctuation rules, applied in order (the standard sacreBLEU Tokenizer13a regexes).
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # split most ASCII punctuation
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma not preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma not followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
)


def tokenize_13a(text: str) -> list[str]:
    """sacreBLEU's 13a tokenization, returned as a token list (newlines are spaces).

    Example: tokenize_13a("x = f(a.b, 1.5);") -> ['x', '=', 'f', '(', 'a', '.', 'b', ',', '1.5', ')', ';']
    """
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in text:
        text = (text.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    text = f" {text} "
    for pattern, repl in _13A_RULES:
        text = pattern.sub(repl, text)
    return text.split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu4(pred: str, ref: str) -> float:
    """FIM-Eval sentence BLEU-4 in 0..100 (unsmoothed; see the module docstring for the edge rules).

    Example: bleu4("x = 1;", "x = 1") -> 63.0 (orders 1..3: precisions 3/4, 2/3, 1/2; no brevity penalty)
    """
    pred, ref = pred.strip(), ref.strip()
    if pred == ref:
        return 100.0
    if not pred or not ref:
        return 0.0
    hyp_tokens, ref_tokens = tokenize_13a(pred), tokenize_13a(ref)
    if not hyp_tokens:
        return 0.0
    max_order = max(1, min(4, len(ref_tokens)))
    log_sum = 0.0
    for n in range(1, max_order + 1):
        hyp_ngrams = _ngrams(hyp_tokens, n)
        possible = sum(hyp_ngrams.values())
        matches = sum((hyp_ngrams & _ngrams(ref_tokens, n)).values())
        if possible == 0 or matches == 0:
            return 0.0  # no smoothing: one empty precision zeroes the geometric mean
        log_sum += math.log(matches / possible) / max_order
    ratio = len(hyp_tokens) / len(ref_tokens)
    brevity = 1.0 if ratio > 1.0 else math.exp(1.0 - 1.0 / ratio)
    return 100.0 * math.exp(log_sum) * brevity


# ---- per-task scores and the per-type table ----

def score_one(pred: str, ref: str) -> dict:
    """All metrics for one (prediction, reference) pair: em (bool), es, bleu, pred_len, ref_len.

    Example: score_one(" pass\n", "pass\n") -> {"em": True, "es": 100.0, "bleu": 100.0, "pred_len": 4, "ref_len": 5}
    """
    return {
        "em": exact_match(pred, ref),
        "es": edit_similarity(pred, ref),
        "bleu": bleu4(pred, ref),
        "pred_len": len(pred.strip()),
        "ref_len": len(ref),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def syntax_valid(prefix: str, middle: str, suffix: str, language: str | None, *,
                 reference: str | None = None) -> bool | None:
    """Does prefix + middle + suffix parse without an ERROR or MISSING node? None: no grammar to judge, or
    the context does not parse even with the `reference` middle.

    eval/builders.py keeps 4k characters on each side of a hole; a cut inside a string or a bracket leaves
    an error that no middle removes (a third of the quickstart's structured tasks), so such a task cannot
    tell a good middle from a bad one and is left out of the rate instead of capping it.

    Example: syntax_valid("def f():\n    return ", "1", "\n", "Python") -> True; with "(" -> False
    """

    if reference is not None and _parses(prefix + reference + suffix, language) is not True:
        return None
    return _parses(prefix + middle + suffix, language)


def _parses(text: str, language: str | None) -> bool | None:
    from lightcoder.fim.spans import parse_source

    parsed = parse_source(text, language)
    return None if parsed is None else not parsed.has_error


def _rate(rows: list[dict], key: str) -> float | None:
    """Percent of rows whose `key` is true, over the rows that have a bool there (None: no such rows)."""
    values = [bool(r[key]) for r in rows if isinstance(r.get(key), bool)]
    return 100.0 * _mean([float(v) for v in values]) if values else None


def _summarize_rows(rows: list[dict]) -> dict:
    pred_len, ref_len = _mean([r["pred_len"] for r in rows]), _mean([r["ref_len"] for r in rows])
    bits = [(r["bits"], r["middle_bytes"]) for r in rows if r.get("bits") is not None and r.get("middle_bytes")]
    return {
        "n": len(rows),
        "em": 100.0 * _mean([float(r["em"]) for r in rows]),
        "es": _mean([r["es"] for r in rows]),
        "bleu": _mean([r["bleu"] for r in rows]),
        "pred_len": pred_len,
        "ref_len": ref_len,
        "len_ratio": pred_len / ref_len if ref_len else 0.0,  # of the means, as FIM-Eval's pred:ref
        "stop_rate": _rate(rows, "stopped"),  # % that ended with the stop token before the limit
        "syntax": _rate(rows, "syntax_ok"),  # % where prefix + completion + suffix parses
        # bits per byte of the reference middle (+ </s>) given the prompt: total bits / total bytes
        "bpb": sum(b for b, _ in bits) / sum(n for _, n in bits) if bits else None,
    }


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per-type means of per-task rows (dicts with task_type, em, es, bleu, pred_len, ref_len and,
    when known, stopped, syntax_ok, bits and middle_bytes).

    Returns {task_type: {n, em, es, bleu, pred_len, ref_len, len_ratio, stop_rate, syntax, bpb}} in
    first-seen type order, then "total". EM, stop_rate and syntax are percentages (None when no row
    has the field); ES and BLEU are already 0..100; lengths are mean characters.
    Example: summarize([{"task_type": "a", "em": True, "es": 100.0, "bleu": 100.0, "pred_len": 4, "ref_len": 4}])
             -> {"a": {"n": 1, "em": 100.0, ...}, "total": {"n": 1, "em": 100.0, ...}}
    """
    by_type: dict[str, list[dict]] = {}
    for row in results:
        by_type.setdefault(row["task_type"], []).append(row)
    table = {task_type: _summarize_rows(rows) for task_type, rows in by_type.items()}
    table[TOTAL] = _summarize_rows(list(results))
    return table


# ---- pass@k (Chen et al. 2021, the unbiased estimator) ----

def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n, c of them correct, passes).

    Closed form 1 - C(n-c, k) / C(n, k), computed as a product to stay exact for large n.
    Example: pass_at_k(10, 3, 1) -> 0.3; pass_at_k(2, 1, 2) -> 1.0
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail
