"""Per-language tree-sitter node types for Structured FIM and the FIM-Eval task kinds: the one table.

`RULES[language]` says which syntax nodes SFIM may mask (whole, or a contiguous run of their
children; fim/spans.py) and which nodes the eval kinds pick (single line, method body,
if/for/while/try). Node-type names are the grammar's own (`tree-sitter-<lang>` wheels pinned in
pyproject); tests/fim/test_rules.py checks that each name exists in its grammar, so a grammar
upgrade that renames a node fails loudly instead of silently masking nothing.

What is listed, per language: definitions and their bodies (function/method/class bodies, blocks),
compound statements (if/for/while/try/switch and their clauses or conditions), simple statements
(assignments, returns, expression statements), and expressions worth completing (calls and their
argument lists, lambdas, conditionals, literals of collections). Leaves (identifiers, numbers) are
not listed: a one-token middle teaches little that random FIM does not.

Adding a language = one `SyntaxRules` entry here plus its grammar in languages.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SyntaxRules:
    """tree-sitter node-type names that drive SFIM and the eval kinds for one language."""

    structural: tuple[str, ...]  # SFIM: nodes whose child runs (or whole extent) may be masked
    trailing_tokens: frozenset[str]  # anonymous tokens a run may end on (the ":" of `if c:`)
    skipped_children: frozenset[str]  # named children that never start or end a run
    simple_statements: tuple[str, ...]  # single_line candidates
    trivial_only_children: frozenset[str]  # a single_line whose only child is one of these is skipped
    function_body: str  # query pattern capturing a function's body as @method_body
    statements: dict[str, tuple[str, ...]] = field(default_factory=dict)  # eval kind -> node types


_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})

PYTHON = SyntaxRules(
    structural=(
        # definitions and blocks: several statements, a whole body, a signature
        "module", "block", "function_definition", "class_definition", "decorated_definition",
        # compound statements and their clauses
        "if_statement", "elif_clause", "else_clause", "for_statement", "while_statement",
        "try_statement", "except_clause", "finally_clause", "with_statement", "match_statement",
        "case_clause",
        # simple statements
        "expression_statement", "return_statement", "assignment", "augmented_assignment",
        "raise_statement", "assert_statement",
        # expressions
        "call", "argument_list", "parameters", "lambda", "conditional_expression",
        "boolean_operator", "comparison_operator", "binary_operator", "not_operator",
        "list", "tuple", "dictionary", "set", "list_comprehension", "dictionary_comprehension",
        "set_comprehension", "generator_expression", "subscript", "pair", "keyword_argument",
        "parenthesized_expression",
    ),
    trailing_tokens=frozenset({":"}),
    skipped_children=frozenset({"line_continuation", "comment"}),
    simple_statements=(
        "expression_statement", "return_statement", "raise_statement", "assert_statement",
        "import_statement", "import_from_statement", "delete_statement", "global_statement",
        "nonlocal_statement",
    ),
    trivial_only_children=frozenset({"string", "concatenated_string", "ellipsis"}),
    function_body="(function_definition body: (block) @method_body)",
    statements={
        "if_statement": ("if_statement",),
        "for_statement": ("for_statement",),
        "while_statement": ("while_statement",),
        "try_statement": ("try_statement",),
    },
)

JAVA = SyntaxRules(
    structural=(
        "program", "class_body", "interface_body", "enum_body", "block", "constructor_body",
        "class_declaration", "method_declaration", "constructor_declaration", "lambda_expression",
        "if_statement", "for_statement", "enhanced_for_statement", "while_statement", "do_statement",
        "try_statement", "try_with_resources_statement", "catch_clause", "finally_clause",
        "switch_expression", "switch_block", "switch_block_statement_group", "synchronized_statement",
        "expression_statement", "return_statement", "throw_statement", "local_variable_declaration",
        "field_declaration", "assignment_expression", "method_invocation", "object_creation_expression",
        "argument_list", "formal_parameters", "ternary_expression", "binary_expression",
        "parenthesized_expression", "array_initializer",
    ),
    trailing_tokens=frozenset({";"}),
    skipped_children=_COMMENTS,
    simple_statements=("expression_statement", "return_statement", "throw_statement",
                       "local_variable_declaration", "break_statement", "continue_statement"),
    trivial_only_children=frozenset(),
    function_body="(method_declaration body: (block) @method_body)",
    statements={
        "if_statement": ("if_statement",),
        "for_statement": ("for_statement", "enhanced_for_statement"),
        "while_statement": ("while_statement",),
        "try_statement": ("try_statement", "try_with_resources_statement"),
    },
)

_JS_STRUCTURAL = (
    "program", "statement_block", "class_body", "function_declaration", "function_expression",
    "arrow_function", "method_definition", "class_declaration", "generator_function_declaration",
    "if_statement", "else_clause", "for_statement", "for_in_statement", "while_statement",
    "do_statement", "try_statement", "catch_clause", "finally_clause", "switch_statement",
    "switch_body", "switch_case",
    "expression_statement", "return_statement", "throw_statement", "lexical_declaration",
    "variable_declaration", "assignment_expression", "augmented_assignment_expression",
    "call_expression", "new_expression", "arguments", "formal_parameters", "ternary_expression",
    "binary_expression", "parenthesized_expression", "object", "array", "pair", "await_expression",
)
_JS_STATEMENTS = {
    "if_statement": ("if_statement",),
    "for_statement": ("for_statement", "for_in_statement"),
    "while_statement": ("while_statement",),
    "try_statement": ("try_statement",),
}
_JS_SIMPLE = ("expression_statement", "return_statement", "throw_statement", "lexical_declaration",
              "variable_declaration", "break_statement", "continue_statement")

JAVASCRIPT = SyntaxRules(
    structural=_JS_STRUCTURAL,
    trailing_tokens=frozenset({";"}),
    skipped_children=_COMMENTS,
    simple_statements=_JS_SIMPLE,
    trivial_only_children=frozenset({"string"}),
    function_body="[(function_declaration body: (statement_block) @method_body) "
                  "(method_definition body: (statement_block) @method_body)]",
    statements=_JS_STATEMENTS,
)

TYPESCRIPT = SyntaxRules(
    structural=_JS_STRUCTURAL + (
        "interface_body", "enum_body", "object_type", "type_alias_declaration",
        "interface_declaration", "abstract_class_declaration", "public_field_definition",
        "type_arguments", "as_expression",
    ),
    trailing_tokens=frozenset({";"}),
    skipped_children=_COMMENTS,
    simple_statements=_JS_SIMPLE,
    trivial_only_children=frozenset({"string"}),
    function_body=JAVASCRIPT.function_body,
    statements=_JS_STATEMENTS,
)

_C_STRUCTURAL = (
    "translation_unit", "compound_statement", "function_definition", "field_declaration_list",
    "enumerator_list", "struct_specifier",
    "if_statement", "else_clause", "for_statement", "while_statement", "do_statement",
    "switch_statement", "case_statement",
    "expression_statement", "return_statement", "declaration", "assignment_expression",
    "call_expression", "argument_list", "parameter_list", "conditional_expression",
    "binary_expression", "parenthesized_expression", "initializer_list",
)
_C_STATEMENTS = {
    "if_statement": ("if_statement",),
    "for_statement": ("for_statement",),
    "while_statement": ("while_statement",),
}

C = SyntaxRules(
    structural=_C_STRUCTURAL,
    trailing_tokens=frozenset({";"}),
    skipped_children=_COMMENTS,
    simple_statements=("expression_statement", "return_statement", "declaration",
                       "break_statement", "continue_statement", "goto_statement"),
    trivial_only_children=frozenset(),
    function_body="(function_definition body: (compound_statement) @method_body)",
    statements=_C_STATEMENTS,
)

CPP = SyntaxRules(
    structural=_C_STRUCTURAL + (
        "class_specifier", "namespace_definition", "declaration_list", "template_declaration",
        "lambda_expression", "try_statement", "catch_clause", "condition_clause",
        "for_range_loop", "field_initializer_list", "new_expression", "throw_statement",
    ),
    trailing_tokens=frozenset({";"}),
    skipped_children=_COMMENTS,
    simple_statements=C.simple_statements + ("throw_statement",),
    trivial_only_children=frozenset(),
    function_body=C.function_body,
    statements={**_C_STATEMENTS, "for_statement": ("for_statement", "for_range_loop"),
                "try_statement": ("try_statement",)},
)

GO = SyntaxRules(
    structural=(
        "source_file", "block", "function_declaration", "method_declaration", "func_literal",
        "type_declaration", "field_declaration_list", "struct_type",
        "if_statement", "for_statement", "for_clause", "range_clause", "expression_switch_statement",
        "type_switch_statement", "select_statement", "expression_case", "type_case",
        "communication_case", "default_case",
        "expression_statement", "return_statement", "assignment_statement", "short_var_declaration",
        "var_declaration", "const_declaration", "go_statement", "defer_statement",
        "call_expression", "argument_list", "parameter_list", "binary_expression",
        "composite_literal", "literal_value", "expression_list",
    ),
    trailing_tokens=frozenset({";"}),
    skipped_children=_COMMENTS,
    simple_statements=("expression_statement", "return_statement", "assignment_statement",
                       "short_var_declaration", "inc_statement", "dec_statement", "go_statement",
                       "defer_statement"),
    trivial_only_children=frozenset(),
    function_body="[(function_declaration body: (block) @method_body) "
                  "(method_declaration body: (block) @method_body)]",
    statements={"if_statement": ("if_statement",), "for_statement": ("for_statement",)},
)

RUST = SyntaxRules(
    structural=(
        "source_file", "block", "function_item", "impl_item", "trait_item", "struct_item",
        "enum_item", "mod_item", "declaration_list", "field_declaration_list", "enum_variant_list",
        "closure_expression", "if_expression", "else_clause", "for_expression", "while_expression",
        "loop_expression", "match_expression", "match_block", "match_arm",
        "expression_statement", "let_declaration", "return_expression", "assignment_expression",
        "compound_assignment_expr", "call_expression", "macro_invocation", "arguments", "parameters",
        "binary_expression", "struct_expression", "field_initializer_list", "tuple_expression",
        "array_expression", "try_expression",
    ),
    trailing_tokens=frozenset({";", ","}),
    skipped_children=_COMMENTS,
    simple_statements=("expression_statement", "let_declaration"),
    trivial_only_children=frozenset(),
    function_body="(function_item body: (block) @method_body)",
    statements={"if_statement": ("if_expression",), "for_statement": ("for_expression",),
                "while_statement": ("while_expression",)},
)

RULES: dict[str, SyntaxRules] = {
    "Python": PYTHON, "Java": JAVA, "JavaScript": JAVASCRIPT, "TypeScript": TYPESCRIPT,
    "C": C, "C++": CPP, "Go": GO, "Rust": RUST,
    "TSX": TYPESCRIPT,  # the tsx grammar names TypeScript's nodes the same (plus JSX ones)
}
