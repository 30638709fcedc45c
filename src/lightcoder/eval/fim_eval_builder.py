"""Build a FIM-Eval-style benchmark (aiXcoder's 13 task types) from any code, with tree-sitter.

Output records are aiXcoder's format — task_id, task_type, pre_mask_code, post_mask_code,
canonical_solution — plus language and path (ours). The types and what is masked:

    method_signature      a function's header: from its first token to where its body starts
    method_body           a function's body (C-like: inside the braces; Python: the indented block)
    single_line           one whole statement line inside a function body
    method_with_comment   a whole function with its leading comment (or Python docstring)
    empty                 a cursor between two statements of a body; the right middle is ""
    method_body_top/mid/bottom   the first / middle / last third of a body's lines (>= 1 line each)
    if / for / while / try / switch   a whole statement of that kind (switch: not Python)

This module has its own node tables (FUNCTION_NODES, STATEMENT_NODES); it does not use
fim/spans.py, whose tables serve training-time SFIM. Deterministic given (files, seed).

Example:
    records = build_fim_eval([("a.py", "Python", source)], per_type=5, seed=0)
    records[0]["task_type"], records[0]["canonical_solution"]
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from functools import lru_cache

TASK_TYPES = ("method_signature", "method_body", "single_line", "method_with_comment", "empty",
              "method_body_top", "method_body_mid", "method_body_bottom",
              "if", "for", "while", "try", "switch")
FUNCTION_NODES = {
    "Python": {"function_definition"},
    "Java": {"method_declaration", "constructor_declaration"},
    "JavaScript": {"function_declaration", "method_definition", "generator_function_declaration"},
    "C++": {"function_definition"},
}
STATEMENT_NODES = {
    "Python": {"if": {"if_statement"}, "for": {"for_statement"}, "while": {"while_statement"},
               "try": {"try_statement"}},
    "Java": {"if": {"if_statement"}, "for": {"for_statement", "enhanced_for_statement"},
             "while": {"while_statement", "do_statement"}, "try": {"try_statement", "try_with_resources_statement"},
             "switch": {"switch_expression", "switch_statement"}},
    "JavaScript": {"if": {"if_statement"}, "for": {"for_statement", "for_in_statement"},
                   "while": {"while_statement", "do_statement"}, "try": {"try_statement"},
                   "switch": {"switch_statement"}},
    "C++": {"if": {"if_statement"}, "for": {"for_statement", "for_range_loop"},
            "while": {"while_statement", "do_statement"}, "try": {"try_statement"},
            "switch": {"switch_statement"}},
}
COMMENT_NODES = {"comment", "line_comment", "block_comment"}
LANGUAGE_NAMES = {"python": "Python", "java": "Java", "javascript": "JavaScript", "js": "JavaScript",
                  "cpp": "C++", "c++": "C++", "cplus": "C++"}
FIM_EVAL_PATHS = {"Python": "test.py", "Java": "test.java", "JavaScript": "test.js", "C++": "test.cpp"}


def normalize_language(language: str) -> str:
    name = LANGUAGE_NAMES.get(language.lower(), language)
    if name not in FUNCTION_NODES:
        raise ValueError(f"FIM-Eval builder supports {sorted(FUNCTION_NODES)}, not {language!r}")
    return name


@lru_cache(maxsize=None)
def _parser(language: str):
    from lightcoder.languages import tree_sitter_parser

    return tree_sitter_parser(language)


def _walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _line_start(text: bytes, pos: int) -> int:
    return text.rfind(b"\n", 0, pos) + 1


def _line_end(text: bytes, pos: int) -> int:
    end = text.find(b"\n", pos)
    return len(text) if end < 0 else end + 1


def _body_lines(src: bytes, body, language: str) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the whole lines strictly inside a body (braces excluded)."""
    if language == "Python":
        a, b = _line_start(src, body.start_byte), _line_end(src, body.end_byte - 1)
    else:
        a, b = _line_end(src, body.start_byte), _line_start(src, body.end_byte - 1)
    lines, pos = [], a
    while pos < b:
        end = _line_end(src, pos)
        lines.append((pos, min(end, b)))
        pos = end
    return [(s, e) for s, e in lines if src[s:e].strip()]


def spans_for_file(content: str, language: str) -> dict[str, list[tuple[int, int]]]:
    """Byte spans per task type found in one file (empty spans have start == end)."""
    language = normalize_language(language)
    src = content.encode("utf-8")
    root = _parser(language).parse(src).root_node
    out: dict[str, list[tuple[int, int]]] = {t: [] for t in TASK_TYPES}
    statements = STATEMENT_NODES[language]
    for node in _walk(root):
        for kind, types in statements.items():
            if node.type in types and not node.has_error:
                out[kind].append((_line_start(src, node.start_byte) if src[_line_start(src, node.start_byte):
                                  node.start_byte].strip() == b"" else node.start_byte, node.end_byte))
        if node.type not in FUNCTION_NODES[language] or node.has_error:
            continue
        body = node.child_by_field_name("body")
        if body is None or body.end_byte - body.start_byte < 2:
            continue
        out["method_signature"].append((node.start_byte, body.start_byte))
        lines = _body_lines(src, body, language)
        if not lines:
            continue
        if language == "Python":
            out["method_body"].append((lines[0][0], lines[-1][1]))
        else:
            out["method_body"].append((body.start_byte + 1, body.end_byte - 1))
        out["single_line"] += [line for line in lines if not src[line[0]:line[1]].strip().startswith((b"#", b"//"))]
        out["empty"] += [(s, s) for s, _ in lines[1:]]
        if len(lines) >= 3:
            third = len(lines) // 3
            out["method_body_top"].append((lines[0][0], lines[third - 1][1]))
            out["method_body_mid"].append((lines[third][0], lines[-third - 1][1]))
            out["method_body_bottom"].append((lines[-third][0], lines[-1][1]))
        prev = node.prev_sibling
        first = body.named_children[0] if body.named_children else None
        docstring = (language == "Python" and first is not None and first.type == "expression_statement"
                     and first.named_children and first.named_children[0].type == "string")
        if prev is not None and prev.type in COMMENT_NODES:
            start = prev.start_byte
            while prev.prev_sibling is not None and prev.prev_sibling.type in COMMENT_NODES:
                prev = prev.prev_sibling
                start = prev.start_byte
            out["method_with_comment"].append((start, node.end_byte))
        elif docstring:
            out["method_with_comment"].append((node.start_byte, node.end_byte))
    return out


def build_fim_eval(files: Iterable[tuple[str, str, str]], *, per_type: int = 10, seed: int = 0,
                   max_middle_chars: int = 2000, max_context_chars: int = 16000,
                   task_types: tuple[str, ...] = TASK_TYPES) -> list[dict]:
    """FIM-Eval records from (path, language, content) triples: up to `per_type` per (language, type).

    Cases are drawn round-robin over files in a seeded order (at most one per file per round), so
    one big file cannot fill a type. Types a language has no syntax for (Python switch) are absent.
    """
    if per_type < 1:
        raise ValueError(f"build_fim_eval: per_type must be >= 1, got {per_type}")
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown:
        raise ValueError(f"build_fim_eval: unknown task types {unknown}; choose from {TASK_TYPES}")
    files = sorted(((p, normalize_language(lang), c) for p, lang, c in files), key=lambda f: (f[1], f[0]))
    per_file = []
    for path, lang, content in files:
        spans = spans_for_file(content, lang)
        for t, items in spans.items():
            random.Random(f"{seed}:{path}:{t}").shuffle(items)
        per_file.append(spans)
    records = []
    for language in sorted({f[1] for f in files}):
        idx = [i for i, f in enumerate(files) if f[1] == language]
        random.Random(f"{seed}:{language}").shuffle(idx)
        for task_type in task_types:
            count, round_ = 0, 0
            while count < per_type and any(len(per_file[i][task_type]) > round_ for i in idx):
                for i in idx:
                    if count >= per_type or len(per_file[i][task_type]) <= round_:
                        continue
                    a, b = per_file[i][task_type][round_]
                    src = files[i][2].encode("utf-8")
                    middle = src[a:b].decode("utf-8", "replace")
                    if len(middle) > max_middle_chars or (task_type != "empty" and not middle.strip()):
                        continue
                    records.append({
                        "task_id": f"{language}/{task_type}/{count}", "task_type": task_type,
                        "pre_mask_code": src[:a].decode("utf-8", "replace")[-max_context_chars:],
                        "post_mask_code": src[b:].decode("utf-8", "replace")[:max_context_chars],
                        "canonical_solution": middle, "language": language, "path": files[i][0]})
                    count += 1
                round_ += 1
    return records
