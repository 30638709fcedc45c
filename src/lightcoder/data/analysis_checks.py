"""The Python checks behind the tree-sitter bug rules (analysis_rules.TS_RULES), and what they share.

A rule's query finds candidate nodes; its check gets the captures ({name: [node]}) and the file's
source bytes and returns True when the match is a definite bug (a hit drops the whole training
file, so near misses must return False). The node-type sets below name what differs between the
Java, JavaScript/TypeScript and C/C++ grammars.

Example: "self-assignment" queries `(assignment_expression left: (_) @l right: (_) @r (#eq? @l @r)) @node`;
    on `void f(int x) { x = x; }` self_assignment(caps, data) is True (an identifier, as a statement).
"""

from __future__ import annotations

import re

# node types per grammar family (tree-sitter names differ between the grammars)
BLOCKS = {"block", "statement_block", "compound_statement", "switch_block_statement_group"}
# what may legally follow a jump: labels (goto targets), JS hoisted declarations, preprocessor
# (`var x;` too: hoisted, and it runs nothing; `var x = 1;` after a return is dead code)
REACHABLE_AFTER_JUMP = {"labeled_statement", "function_declaration", "class_declaration",
                        "generator_function_declaration", "empty_statement", "comment",
                        "case_statement", "switch_label"}
SIDE_EFFECTS = {"call_expression", "method_invocation", "update_expression",
                "assignment_expression", "augmented_assignment_expression", "new_expression",
                "object_creation_expression", "await_expression", "yield_expression",
                "delete_expression", "macro_invocation"}
LITERALS = {"true", "false", "null", "null_literal", "number", "number_literal",
            "decimal_integer_literal", "string", "string_literal", "char_literal",
            "character_literal", "nullptr"}
VALID_TYPEOF = {b"undefined", b"object", b"boolean", b"number", b"string", b"function",
                b"symbol", b"bigint", b"unknown"}  # "unknown": old IE's ActiveX objects


MACRO_STATEMENT = re.compile(rb"[A-Z_][A-Z0-9_]*\s*(\(.*\))?\s*;?", re.DOTALL)


def _inside(node, *types: str) -> bool:
    node = node.parent
    while node is not None:
        if node.type in types:
            return True
        node = node.parent
    return False


def parsed_cleanly(node) -> bool:
    """False when the match sits in or next to a parse error (macros, #if inside expressions):
    the tree there is a guess, so no rule trusts it."""
    while node is not None:
        if node.type == "ERROR" or (node.type in BLOCKS and node.has_error):
            return False
        node = node.parent
    return True


def _norm(node) -> bytes:
    """A comparable form: tokens without comments or layout (`a  &&\n b` == `a && b`)."""
    return b"\x00".join(_tokens(node))


def _pure(node) -> bool:
    """True when nothing under the node calls, assigns or increments (so evaluating it twice
    gives the same value)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type in SIDE_EFFECTS:
            return False
        stack.extend(n.named_children)
    return True


def _op(caps, data: bytes) -> bytes:
    """The operator between captures @l and @r."""
    return data[caps["l"][0].end_byte: caps["r"][0].start_byte].strip()


def _unwrap(node):
    """`else_clause` (C, C++, JS) -> the statement inside; other grammars have none."""
    while node is not None and node.type in ("else_clause", "condition_clause"):
        node = node.named_children[-1] if node.named_children else None
    return node


# ---- checks: (captures, source bytes) -> True when the match is a bug -------------------------

def self_assignment(caps, data):
    node, left = caps["node"][0], caps["l"][0]
    if _op(caps, data) != b"=" or node.parent is None or node.parent.type != "expression_statement":
        return False  # `noexcept(x = x)` is unevaluated
    if left.type == "identifier":  # C++ templates assign `__a = __a;` to require operator=
        return not _inside(node, "template_declaration")
    # JS `el.src = el.src` re-runs a setter on purpose; Java fields have no setters
    return left.type in ("field_access", "field_expression")


def self_comparison(caps, data):
    # `x != x` / `x == x` are the portable NaN tests, so equality is left out; `#if 1 && 1`
    # (literals) is generated; C++ `!(*it < *it)` checks a comparator's irreflexivity
    left = caps["l"][0]
    return _op(caps, data) in (b"<", b">", b"<=", b">=", b"&&", b"||") and _pure(left) and \
        left.type not in LITERALS and left.type != "pointer_expression"


def _tokens(node) -> list[bytes]:
    """The node's tokens, comments left out and string literals whole, so that layout and
    comments do not matter but `" %s"` and `"  %s"` still differ."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if n.type.endswith("comment"):
            continue
        if n.child_count == 0 or "string" in n.type or n.type.endswith("literal"):
            out.append(n.text)
        else:
            stack.extend(reversed(n.children))
    return out


def _is_else_if(node) -> bool:
    parent = node.parent
    return parent is not None and (parent.type == "else_clause" or (
        parent.type == "if_statement" and parent.child_by_field_name("alternative") == node))


def identical_branches(caps, data):
    """`if (c) A else A`; the last two branches of an else-if chain are left out, since
    `else if (k == X) return 0; else return 0;` is often written on purpose, for symmetry."""
    node, a, b = caps["node"][0], caps["a"][0], _unwrap(caps["b"][0])
    if b is None or b.type == "if_statement" or _is_else_if(node):
        return False
    code = [c for c in a.named_children if not c.type.endswith("comment")]
    return bool(code if a.type in BLOCKS else [a]) and _tokens(a) == _tokens(b)


def duplicate_condition(caps, data):
    node = caps["node"][0]
    if _is_else_if(node):
        return False  # counted once, from the top of the chain
    seen, cur = set(), node
    while cur is not None and cur.type == "if_statement":
        cond = cur.child_by_field_name("condition")
        if cond is not None and _pure(cond):
            key = _norm(cond)
            if key in seen:
                return True
            seen.add(key)
        cur = _unwrap(cur.child_by_field_name("alternative"))
    return False


def assignment_in_condition(caps, data):
    node = caps["node"][0]
    if data[node.child_by_field_name("left").end_byte:
            node.child_by_field_name("right").start_byte].strip() != b"=":
        return False
    parent = node.parent  # one pair of parentheses (two is the "I mean it" idiom)
    if parent is None:
        return False
    if parent.type == "parenthesized_expression":
        parent = parent.parent
    elif parent.type != "condition_clause":
        return False
    if parent is not None and parent.type == "condition_clause":
        parent = parent.parent
    return parent is not None and parent.type in ("if_statement", "while_statement",
                                                  "do_statement")


def unreachable(caps, data):
    jump = caps["node"][0]
    if jump.parent is None or jump.parent.type not in BLOCKS:
        return False
    nxt = jump.next_named_sibling
    while nxt is not None and nxt.type.endswith("comment"):  # Java: line_comment
        nxt = nxt.next_named_sibling
    if nxt is not None and nxt.type == "variable_declaration":
        return any(d.child_by_field_name("value") is not None for d in nxt.named_children)
    return nxt is not None and nxt.type not in REACHABLE_AFTER_JUMP and not \
        nxt.type.startswith("preproc") and nxt.text.strip() != b";" and not nxt.has_error \
        and not MACRO_STATEMENT.fullmatch(nxt.text)  # `return x; Py_UNREACHABLE();`


def _loop_var_and_start(init) -> tuple[bytes, bool] | None:
    """(`i`, starts at a number literal) for `i = 0`, `int i = 0`, `let i = 0`."""
    if init is None:
        return None
    if init.type == "assignment_expression":
        name, value = init.child_by_field_name("left"), init.child_by_field_name("right")
    else:
        decl = next((c for c in init.named_children if c.type in (
            "variable_declarator", "init_declarator")), None)
        if decl is None:
            return None
        name = decl.child_by_field_name("name") or decl.child_by_field_name("declarator")
        value = decl.child_by_field_name("value")
    if name is None or value is None:
        return None
    return name.text, value.type in ("number", "number_literal", "decimal_integer_literal")


def wrong_loop_direction(caps, data):
    node = caps["node"][0]
    init = node.child_by_field_name("init") or node.child_by_field_name("initializer")
    cond = node.child_by_field_name("condition")
    step = node.child_by_field_name("update") or node.child_by_field_name("increment")
    var = _loop_var_and_start(init)
    if var is None or not var[1] or cond is None or step is None or \
            cond.type != "binary_expression":
        return False
    left, right = cond.child_by_field_name("left"), cond.child_by_field_name("right")
    if left is None or right is None or left.text != var[0]:
        return False
    op = data[left.end_byte: right.start_byte].strip()
    s = re.sub(rb"\s+", b"", step.text)
    name = re.escape(var[0])
    down = re.fullmatch(rb"(--%s|%s--|%s-=\d+)" % (name, name, name), s) is not None
    up = re.fullmatch(rb"(\+\+%s|%s\+\+|%s\+=\d+)" % (name, name, name), s) is not None
    return (op in (b"<", b"<=") and down) or (op in (b">", b">=") and up)


def _typeof_operand(node) -> bool:
    return node.type == "unary_expression" and node.text.startswith(b"typeof")


def invalid_typeof(caps, data):
    if _op(caps, data) not in (b"==", b"===", b"!=", b"!=="):
        return False
    left, right = caps["l"][0], caps["r"][0]
    if _typeof_operand(right):
        left, right = right, left
    return _typeof_operand(left) and right.type == "string" and \
        right.text[1:-1] not in VALID_TYPEOF and b"${" not in right.text


def _property_key(key) -> bytes | None:
    if key.type in ("property_identifier", "number"):
        return key.text
    if key.type == "string":
        return key.text[1:-1]
    return None  # computed keys: unknown until run time


def duplicate_key(caps, data):
    seen = set()
    for pair in caps["node"][0].named_children:
        if pair.type != "pair":
            continue
        key = _property_key(pair.child_by_field_name("key"))
        if key is not None:
            if key in seen:
                return True
            seen.add(key)
    return False


def duplicate_case(caps, data):
    seen = set()
    for case in caps["node"][0].named_children:
        value = case.child_by_field_name("value") if case.type == "switch_case" else None
        if value is not None and _pure(value):
            if _norm(value) in seen:
                return True
            seen.add(_norm(value))
    return False


def sizeof_pointer(caps, data):
    """memset(p, 0, sizeof(p)) where p is a pointer (or array) parameter of the function."""
    target = caps["dst"][0].text
    size = caps["size"][0]
    inner = size.child_by_field_name("value")
    while inner is not None and inner.type == "parenthesized_expression" and inner.named_children:
        inner = inner.named_children[0]
    if inner is None or inner.text != target:
        return False
    fn = size.parent
    while fn is not None and fn.type != "function_definition":
        fn = fn.parent
    declarator = fn.child_by_field_name("declarator") if fn is not None else None
    while declarator is not None and declarator.type != "function_declarator":
        declarator = declarator.child_by_field_name("declarator")
    params = declarator.child_by_field_name("parameters") if declarator is not None else None
    for param in params.named_children if params is not None else ():
        d = param.child_by_field_name("declarator")
        if d is not None and d.type in ("pointer_declarator", "array_declarator"):
            name = d.child_by_field_name("declarator")
            if name is not None and name.text == target:
                return True
    return False


def double_free(caps, data):
    """free(p); ... free(p); in one block, nothing in between mentions p."""
    first = caps["node"][0]
    name = caps["arg"][0].text
    word = re.compile(rb"(?<![\w.>])%s(?!\w)" % re.escape(name))
    sib = first.next_named_sibling
    while sib is not None:
        text = re.sub(rb"\s+", b"", sib.text)
        if text in (b"free(%s);" % name,):
            return True
        if word.search(sib.text) or sib.type not in ("expression_statement", "comment",
                                                     "declaration"):
            return False
        sib = sib.next_named_sibling
    return False


def delete_mismatch(caps, data):
    """`p = new T[n]` and `delete p` (not `delete[] p`) in one function body."""
    body = caps["node"][0]
    arrays: set[bytes] = set()
    scalar_deletes: set[bytes] = set()
    others: set[bytes] = set()
    stack = [body]
    while stack:
        n = stack.pop()
        stack.extend(n.named_children)
        target = value = None
        if n.type == "assignment_expression":
            target, value = n.child_by_field_name("left"), n.child_by_field_name("right")
        elif n.type == "init_declarator":
            target, value = n.child_by_field_name("declarator"), n.child_by_field_name("value")
            while target is not None and target.type == "pointer_declarator":
                target = target.child_by_field_name("declarator")
        elif n.type == "delete_expression" and b"[" not in n.text.split(b"delete", 1)[1][:4] \
                and n.named_children and n.named_children[0].type == "identifier":
            scalar_deletes.add(n.named_children[0].text)
        if target is not None and target.type == "identifier" and value is not None:
            is_array = value.type == "new_expression" and any(
                c.type == "new_declarator" for c in value.named_children)
            (arrays if is_array else others).add(target.text)
    return bool((arrays - others) & scalar_deletes)


def misnamed_override(caps, data):
    """Instance method `hashcode()`, `tostring()` or `equal(x)`: one letter off Object's."""
    node = caps["node"][0]
    params = node.child_by_field_name("parameters")
    mods = next((c for c in node.children if c.type == "modifiers"), None)
    if params is None or (mods is not None and b"static" in mods.text):
        return False
    declared = [p for p in params.named_children if p.type.endswith("parameter")]
    if caps["m"][0].text != b"equal":
        return not declared
    kind = declared[0].child_by_field_name("type") if len(declared) == 1 else None
    return kind is not None and kind.text in (b"Object", b"java.lang.Object")


def empty_if_body(caps, data):
    node = caps["node"][0]
    nxt = node.next_named_sibling  # `if (false) ;` then `#if X  else if ...  #endif`
    if node.child_by_field_name("alternative") is not None or (
            nxt is not None and nxt.type.startswith("preproc")):
        return False
    body = node.child_by_field_name("consequence")
    cond = node.child_by_field_name("condition")
    if body is None:  # Java keeps the lone `;` anonymous
        return node.text.rstrip().endswith(b";") and cond is not None and \
            data[cond.end_byte: node.end_byte].strip() == b";"
    return body.text.strip() == b";" and cond is not None and \
        b"\n" not in data[cond.end_byte: body.start_byte]  # `if (x)\n ;` is deliberate layout
