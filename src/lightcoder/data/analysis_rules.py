"""Tree-sitter bug rules for Java, JavaScript/TypeScript, C and C++ (the static-analysis step).

Each rule is a tree-sitter query that finds candidate nodes plus an optional Python check on
the captured nodes (the checks live in analysis_checks.py); the queries of all rules run as one, in
a single walk of the tree. Rules aim at *definite* bugs - code that cannot do what its author
meant - because a hit drops the whole training file; style smells and "probably wrong" patterns
are left out. Hit counts on real corpora, and the rules dropped for false positives, are in
docs/data.md ("Static analysis rules").

Example: rule_hits("void f(int n) { for (int i = 0; i < n; i--) {} }", "C")
    == {"wrong-loop-direction": 1}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from lightcoder.data.analysis_checks import (assignment_in_condition, delete_mismatch, double_free, duplicate_case,
                                             duplicate_condition, duplicate_key, empty_if_body, identical_branches,
                                             invalid_typeof, misnamed_override, parsed_cleanly, self_assignment,
                                             self_comparison, sizeof_pointer, unreachable, wrong_loop_direction)
from lightcoder.languages import has_grammar, tree_sitter_language, tree_sitter_parser

C_LIKE = ("Java", "JavaScript", "TypeScript", "C", "C++")
JS = ("JavaScript", "TypeScript")
C_CPP = ("C", "C++")
# the statements after which nothing in the same block runs (unreachable-code), per grammar family
JUMPS = ["return_statement", "throw_statement", "break_statement", "continue_statement"]
C_JUMPS = ["return_statement", "break_statement", "continue_statement", "goto_statement"]


@dataclass(frozen=True)
class Rule:
    """A query over one or more grammars; `check` (if any) keeps the true bugs among matches."""
    languages: tuple[str, ...]
    query: str | dict[str, str]  # one query, or one per language
    why: str
    check: Callable | None = None

    def query_for(self, language: str) -> str:
        return self.query if isinstance(self.query, str) else self.query[language]


_ASSIGN_LIT = ("(assignment_expression right: [{}]) @node")
_JAVA_DECL_DIV = ("(_ type: (floating_point_type) declarator: (variable_declarator value: "
                  "(binary_expression left: (decimal_integer_literal) operator: \"/\" "
                  "right: (decimal_integer_literal)))) @node")
_C_DECL_DIV = ("(declaration type: (primitive_type) @t declarator: (init_declarator value: "
               "(binary_expression left: (number_literal) @a operator: \"/\" "
               "right: (number_literal) @b)) (#match? @t \"^(float|double)$\") "
               "(#match? @a \"^[0-9]+$\") (#match? @b \"^[0-9]+$\")) @node")

# The names, in this order, and which run by default live in data/config.py (TS_RULE_NAMES,
# DEFAULT_TS_RULES), so the config validates without loading the rules; tests check they agree.
TS_RULES: dict[str, Rule] = {
    "self-assignment": Rule(
        C_LIKE, "(assignment_expression left: (_) @l right: (_) @r (#eq? @l @r)) @node",
        "`x = x;` does nothing; the author meant another variable (this.x = x)",
        self_assignment),
    "self-comparison": Rule(
        C_LIKE, "(binary_expression left: (_) @l right: (_) @r (#eq? @l @r)) @node",
        "`a < a`, `a && a`: constant or redundant, a copy-paste slip (== / != are NaN tests)",
        self_comparison),
    "identical-branches": Rule(
        C_LIKE, "(if_statement consequence: (_) @a alternative: (_) @b) @node",
        "if and else do the same thing, so the condition is pointless or a branch is wrong "
        "(off by default: in the JDK the 7 hits are deliberate, commented placeholders)",
        identical_branches),
    "duplicate-condition": Rule(
        C_LIKE, "(if_statement alternative: (_)) @node",
        "`if (a) .. else if (a)`: the second branch can never run", duplicate_condition),
    "assignment-in-condition": Rule(
        C_LIKE, {
            "Java": _ASSIGN_LIT.format("(true) (false) (decimal_integer_literal) (null_literal)"),
            "JavaScript": _ASSIGN_LIT.format("(true) (false) (number) (null) (string)"),
            "TypeScript": _ASSIGN_LIT.format("(true) (false) (number) (null) (string)"),
            "C": _ASSIGN_LIT.format("(number_literal) (true) (false) (null) (char_literal)"),
            "C++": _ASSIGN_LIT.format("(number_literal) (true) (false) (null) "
                                      "(char_literal)")},
        "`if (x = 0)`: assigns a constant, so the branch is fixed; `==` was meant",
        assignment_in_condition),
    "unreachable-code": Rule(
        C_LIKE, {lang: "[" + " ".join(f"({j})" for j in jumps) + "] @node" for lang, jumps in (
            ("Java", JUMPS), ("JavaScript", JUMPS), ("TypeScript", JUMPS),
            ("C", C_JUMPS), ("C++", C_JUMPS + ["throw_statement"]))},
        "a statement right after return/throw/break/continue in the same block never runs",
        unreachable),
    "wrong-loop-direction": Rule(
        C_LIKE, "(for_statement) @node",
        "`for (i = 0; i < n; i--)`: the counter moves away from the bound",
        wrong_loop_direction),
    "integer-division-to-float": Rule(
        ("Java", "C", "C++"), {"Java": _JAVA_DECL_DIV, "C": _C_DECL_DIV, "C++": _C_DECL_DIV},
        "`double d = 1 / 2;` is 0: both operands are integers"),
    "string-reference-equality": Rule(
        ("Java",), '(binary_expression left: (_) @l operator: ["==" "!="]'
        " right: (string_literal) @r) @node",
        "`s == \"text\"` compares references, not text; equals() was meant (off by default: "
        "the JDK's 326 hits are deliberate comparisons of interned strings)"),
    "split-on-regex-metachar": Rule(
        ("Java",), '(method_invocation name: (identifier) @m (#eq? @m "split") arguments: '
        '(argument_list . (string_literal) @a .) (#match? @a "^\\"[.|]\\"$")) @node',
        "`s.split(\".\")` splits on every character (regex), returning an empty array"),
    "misnamed-override": Rule(
        ("Java",), '(method_declaration name: (identifier) @m '
        '(#match? @m "^(hashcode|equal|tostring)$")) @node',
        "`hashcode()`, `equal(Object)`, `tostring()` overload nothing: the Object method "
        "keeps its default", misnamed_override),
    "thread-run": Rule(
        ("Java",), '(method_invocation object: (object_creation_expression type: '
        '(type_identifier) @t (#eq? @t "Thread")) name: (identifier) @m (#eq? @m "run")) @node',
        "`new Thread(r).run()` runs r on the calling thread; start() was meant"),
    "compare-with-nan": Rule(
        JS, '[(binary_expression operator: ["==" "===" "!=" "!=="] right: (identifier) @r '
        '(#eq? @r "NaN")) (binary_expression left: (identifier) @r operator: '
        '["==" "===" "!=" "!=="] (#eq? @r "NaN"))] @node',
        "`x === NaN` is always false; Number.isNaN(x) was meant"),
    "invalid-typeof": Rule(
        JS, "(binary_expression left: (_) @l right: (_) @r) @node",
        "`typeof x === \"undefned\"`: typeof never returns that string", invalid_typeof),
    "duplicate-key": Rule(
        JS, "(object) @node",
        "`{a: 1, a: 2}`: the first value is silently lost", duplicate_key),
    "duplicate-case": Rule(
        JS, "(switch_body) @node",
        "a repeated `case` label can never be reached", duplicate_case),
    "unsafe-negation": Rule(
        JS, '(binary_expression left: (unary_expression operator: "!") operator: '
        '["in" "instanceof"]) @node',
        "`!k in o` is `(!k) in o`; `!(k in o)` was meant"),
    "dangerous-gets": Rule(
        C_CPP, '(call_expression function: (identifier) @f (#eq? @f "gets")) @node',
        "gets() cannot bound its read (removed in C11): a buffer overflow"),
    "sizeof-pointer": Rule(
        C_CPP, '(call_expression function: (identifier) @f (#match? @f "^(memset|memcpy|memmove)$")'
        ' arguments: (argument_list . (identifier) @dst (_) (sizeof_expression) @size .)) @node',
        "memset(p, 0, sizeof(p)) on a pointer/array parameter clears only pointer-size bytes",
        sizeof_pointer),
    "memset-zero-length": Rule(
        C_CPP, '(call_expression function: (identifier) @f (#eq? @f "memset") arguments: '
        '(argument_list . (_) (_) @v (number_literal) @n .) (#eq? @n "0") '
        '(#not-eq? @v "0")) @node',
        "memset(p, c, 0) writes nothing: the value and length arguments are swapped"),
    "double-free": Rule(
        C_CPP, '(expression_statement (call_expression function: (identifier) @f (#eq? @f "free")'
        " arguments: (argument_list . (identifier) @arg .))) @node",
        "free(p) twice in a row with p untouched between: heap corruption", double_free),
    "delete-mismatch": Rule(
        ("C++",), "(function_definition body: (compound_statement) @node)",
        "`p = new T[n]` released with `delete p` instead of `delete[] p`: undefined behaviour",
        delete_mismatch),
    "empty-if-body": Rule(
        C_LIKE, "(if_statement) @node",
        "`if (c);` ends the if at the semicolon, so the next statement always runs",
        empty_if_body),
}


@cache
def _query(language: str, rules: tuple[str, ...]):
    """One query holding every rule's patterns, so the tree is walked once, not once per rule
    (about 3x faster on the JDK); returns (query, the rule of each pattern index)."""
    from tree_sitter import Query

    grammar = tree_sitter_language(language)
    owners: list[str] = []
    for rule in rules:
        owners += [rule] * Query(grammar, TS_RULES[rule].query_for(language)).pattern_count
    text = "\n".join(TS_RULES[rule].query_for(language) for rule in rules)
    return Query(grammar, text), tuple(owners)


def rule_matches(text: str, language: str, rules=tuple(TS_RULES), tree=None):
    """Yield (rule, node) for every hit of the tree-sitter rules that apply to the language
    (the grammar's parse is reused when `tree` is given)."""
    active = tuple(r for r in rules if language in TS_RULES[r].languages)
    if not active or not has_grammar(language):
        return
    data = text.encode("utf-8")
    root = (tree or tree_sitter_parser(language).parse(data)).root_node
    from tree_sitter import QueryCursor

    query, owners = _query(language, active)
    for pattern, caps in QueryCursor(query).matches(root):  # a cursor per call: generators nest
        rule = owners[pattern]
        check = TS_RULES[rule].check
        if (check is None or check(caps, data)) and parsed_cleanly(caps["node"][0]):
            yield rule, caps["node"][0]


def rule_hits(text: str, language: str, rules=tuple(TS_RULES), tree=None) -> dict[str, int]:
    """{rule: hits} of `rule_matches`."""
    hits: dict[str, int] = {}
    for rule, _ in rule_matches(text, language, rules, tree):
        hits[rule] = hits.get(rule, 0) + 1
    return hits
