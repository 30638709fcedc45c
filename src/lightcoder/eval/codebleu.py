"""CodeBLEU (Ren et al. 2020), written from the paper's definition with our tree-sitter grammars.

    CodeBLEU = 0.25 * BLEU + 0.25 * weighted-BLEU + 0.25 * syntax match + 0.25 * dataflow match

All four parts are in 0..1 and computed per (prediction, reference) pair (FIM-Eval scores each
case and averages; research/aixcoder-7b.md §6.3):

- BLEU: 4-gram BLEU on the sacreBLEU 13a tokens, unsmoothed, with the brevity penalty; as in metrics.bleu4 the
  highest order is the reference's length when it has fewer than 4 tokens, and orders longer than the
  prediction are left out of the geometric mean.
- weighted n-gram: the same, but unigram matches count 1.0 for a language keyword and 0.2 for
  any other token (the paper's 5:1 weighting); higher orders as in BLEU.
- syntax match: the share of the reference's syntax subtrees (non-leaf nodes, as
  s-expressions of node types, identifiers and literals anonymised) found in the prediction's tree.
- dataflow match: the share of the reference's data-flow edges found in the prediction's, with
  variables renamed var_0, var_1, ... in order of first appearance. An edge is
  (variable, "comesFrom" | "computedFrom", sorted source variables): an assignment's targets are
  computedFrom the identifiers on its right side; a later use comesFrom the last assignment.

Edge rules (made explicit because they decide the "empty" task type's score): an empty
prediction for a non-empty reference (or the reverse) scores 0 in every part; two empty strings
score 1.0 (the `codebleu` package gives ~0.48 there, FIM-Eval's odd "empty" column); otherwise a
part whose reference side is empty (no subtrees, no data flow) scores 1.0 when the prediction's
side is empty too and 0.0 otherwise. Our
numbers are not bit-identical to the `codebleu` package (its dataflow extractor is hand-written
per language and its BLEU smooths), so compare CodeBLEU only between runs of this implementation.

Example: codebleu("x = a + b", "x = a + b", "python")["codebleu"] -> 1.0
"""

from __future__ import annotations

import keyword
import math
from collections import Counter
from functools import lru_cache

from lightcoder.eval.metrics import _ngrams, tokenize_13a

CODEBLEU_VERSION = "lightcoder-codebleu-2"  # 2: short references and predictions (reduced orders)
WEIGHTS = (0.25, 0.25, 0.25, 0.25)

KEYWORDS: dict[str, frozenset[str]] = {
    "python": frozenset(keyword.kwlist) | {"self", "print", "len", "range"},
    "java": frozenset("""abstract assert boolean break byte case catch char class const continue default do
        double else enum extends final finally float for goto if implements import instanceof int interface
        long native new package private protected public return short static strictfp super switch
        synchronized this throw throws transient try void volatile while true false null var""".split()),
    "javascript": frozenset("""break case catch class const continue debugger default delete do else export
        extends finally for function if import in instanceof let new return super switch this throw try
        typeof var void while with yield async await of true false null undefined""".split()),
    "cpp": frozenset("""alignas alignof auto bool break case catch char class const constexpr continue
        decltype default delete do double else enum explicit extern false float for friend goto if inline
        int long mutable namespace new noexcept nullptr operator private protected public return short
        signed sizeof static struct switch template this throw true try typedef typename union unsigned
        using virtual void volatile while std vector string""".split()),
}
_GRAMMAR = {"python": "Python", "java": "Java", "javascript": "JavaScript", "cpp": "C++"}
_IDENTIFIER_TYPES = {"identifier", "field_identifier", "property_identifier", "type_identifier",
                     "shorthand_property_identifier"}
_ASSIGN_TYPES = {"assignment", "augmented_assignment", "assignment_expression", "variable_declarator",
                 "init_declarator", "local_variable_declaration", "augmented_assignment_expression",
                 "for_in_clause", "for_statement", "enhanced_for_statement", "for_in_statement"}


def canonical_language(language: str) -> str:
    """'Python'/'py' -> 'python', 'C++'/'cplus' -> 'cpp', 'JS' -> 'javascript'; ValueError otherwise."""
    key = language.lower().replace(" ", "")
    aliases = {"py": "python", "python": "python", "java": "java", "js": "javascript",
               "javascript": "javascript", "c++": "cpp", "cpp": "cpp", "cplus": "cpp", "cc": "cpp"}
    if key not in aliases:
        raise ValueError(f"CodeBLEU supports {sorted(set(aliases.values()))}, not {language!r}")
    return aliases[key]


@lru_cache(maxsize=None)
def _parser(language: str):
    from lightcoder.languages import tree_sitter_parser

    return tree_sitter_parser(_GRAMMAR[language])


def _parse(code: str, language: str):
    return _parser(language).parse(code.encode("utf-8")).root_node


# ---- BLEU parts ----

def _bleu_from_tokens(hyp: list[str], ref: list[str], unigram_weight=None) -> float:
    if not ref:
        return 1.0 if not hyp else 0.0
    if not hyp:
        return 0.0
    log_precisions = []
    for n in range(1, min(4, len(ref)) + 1):  # the orders a short reference has, as metrics.bleu4
        hyp_ngrams, ref_ngrams = _ngrams(hyp, n), _ngrams(ref, n)
        if n == 1 and unigram_weight is not None:
            matched = hyp_ngrams & ref_ngrams
            num = sum(unigram_weight(g[0]) * c for g, c in matched.items())
            den = sum(unigram_weight(g[0]) * c for g, c in hyp_ngrams.items())
        else:
            num, den = sum((hyp_ngrams & ref_ngrams).values()), sum(hyp_ngrams.values())
        if den == 0:  # hypothesis shorter than n: this order cannot be judged; the mean is over judged orders
            continue
        if num == 0:
            return 0.0
        log_precisions.append(math.log(num / den))
    log_sum = sum(log_precisions) / len(log_precisions)  # order 1 is always judged: hyp is not empty
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1.0 - len(ref) / len(hyp))
    return math.exp(log_sum) * brevity


def ngram_match(pred: str, ref: str) -> float:
    """Unsmoothed BLEU-4 on 13a tokens, 0..1. Example: ngram_match("a b c d", "a b c d") -> 1.0"""
    return _bleu_from_tokens(tokenize_13a(pred), tokenize_13a(ref))


def weighted_ngram_match(pred: str, ref: str, language: str) -> float:
    """BLEU-4 whose unigram precision weighs keywords 1.0 and other tokens 0.2, 0..1."""
    keywords = KEYWORDS[canonical_language(language)]
    return _bleu_from_tokens(tokenize_13a(pred), tokenize_13a(ref),
                             unigram_weight=lambda tok: 1.0 if tok in keywords else 0.2)


# ---- syntax match ----

def _subtrees(node) -> Counter:
    """Multiset of s-expressions (node types only) of every node that has children."""
    out: Counter = Counter()

    def sexp(n) -> str:
        if n.child_count == 0:
            return n.type
        s = "(" + n.type + " " + " ".join(sexp(c) for c in n.children) + ")"
        out[s] += 1
        return s

    sexp(node)
    return out


def syntax_match(pred: str, ref: str, language: str) -> float:
    """Share of the reference's subtrees present in the prediction's tree (multiset), 0..1."""
    lang = canonical_language(language)
    if not ref.strip():
        return 1.0 if not pred.strip() else 0.0
    ref_trees = _subtrees(_parse(ref, lang))
    if not ref_trees:
        return 1.0 if not _subtrees(_parse(pred, lang)) else 0.0
    if not pred.strip():
        return 0.0
    pred_trees = _subtrees(_parse(pred, lang))
    return sum((ref_trees & pred_trees).values()) / sum(ref_trees.values())


# ---- dataflow match ----

def _identifiers(node) -> list:
    if node.type in _IDENTIFIER_TYPES:
        return [node]
    return [leaf for child in node.children for leaf in _identifiers(child)]


def _assignment_sides(node):
    """(targets, sources) identifier nodes of an assignment-like node, or None."""
    left = node.child_by_field_name("left") or node.child_by_field_name("name") \
        or node.child_by_field_name("declarator")
    right = node.child_by_field_name("right") or node.child_by_field_name("value")
    if node.type in ("for_statement", "for_in_clause", "enhanced_for_statement", "for_in_statement"):
        left = node.child_by_field_name("left") or node.child_by_field_name("name")
        right = node.child_by_field_name("right") or node.child_by_field_name("value")
    if left is None or right is None:
        return None
    return _identifiers(left), _identifiers(right)


def dataflow_edges(code: str, language: str) -> Counter:
    """Normalised data-flow edges of `code`: Counter of (var, relation, (source vars...)).

    Example: dataflow_edges("a = 1\\nb = a + c", "python") ->
             {("var_0", "computedFrom", ()): 1, ("var_1", "computedFrom", ("var_0", "var_2")): 1,
              ("var_0", "comesFrom", ("var_0",)): 1}   # the use of `a` in line 2
    """
    lang = canonical_language(language)
    root = _parse(code, lang)
    names: dict[str, str] = {}

    def norm(n) -> str:
        text = n.text.decode("utf-8", "replace")
        if text not in names:
            names[text] = f"var_{len(names)}"
        return names[text]

    for leaf in _identifiers(root):  # names numbered in textual order, whatever the visit order
        norm(leaf)
    edges: Counter = Counter()
    defined: set[str] = set()
    assigned_nodes: set[tuple[int, int]] = set()

    def visit(node) -> None:
        if node.type in _ASSIGN_TYPES:
            sides = _assignment_sides(node)
            if sides is not None:
                targets, sources = sides
                src = tuple(sorted({norm(s) for s in sources}))
                for t in targets:
                    edges[(norm(t), "computedFrom", src)] += 1
                    assigned_nodes.add((t.start_byte, t.end_byte))
                for child in node.children:
                    visit(child)
                for t in targets:
                    defined.add(norm(t))
                return
        if node.type in _IDENTIFIER_TYPES and (node.start_byte, node.end_byte) not in assigned_nodes:
            name = norm(node)
            if name in defined:
                edges[(name, "comesFrom", (name,))] += 1
            return
        for child in node.children:
            visit(child)

    visit(root)
    return edges


def dataflow_match(pred: str, ref: str, language: str) -> float:
    """Share of the reference's normalised data-flow edges found in the prediction's, 0..1."""
    ref_edges = dataflow_edges(ref, language) if ref.strip() else Counter()
    pred_edges = dataflow_edges(pred, language) if pred.strip() else Counter()
    if not ref_edges:
        return 1.0 if not pred_edges else 0.0
    return sum((ref_edges & pred_edges).values()) / sum(ref_edges.values())


def codebleu(pred: str, ref: str, language: str, weights: tuple[float, ...] = WEIGHTS) -> dict[str, float]:
    """All four parts and their weighted sum, each 0..1 (multiply by 100 for FIM-Eval tables)."""
    pred, ref = pred.strip(), ref.strip()
    if bool(pred) != bool(ref):  # one side empty: nothing matches, whatever each part would say alone
        return {"ngram_match": 0.0, "weighted_ngram_match": 0.0, "syntax_match": 0.0, "dataflow_match": 0.0,
                "codebleu": 0.0}
    parts = {
        "ngram_match": ngram_match(pred, ref),
        "weighted_ngram_match": weighted_ngram_match(pred, ref, language),
        "syntax_match": syntax_match(pred, ref, language),
        "dataflow_match": dataflow_match(pred, ref, language),
    }
    parts["codebleu"] = sum(w * v for w, v in zip(weights, parts.values()))
    return parts
