"""FIM-Eval-style tasks built from any code (aiXcoder §6.3): mask one structure, keep the context.

Input: SourceFile records (usually the test split). Output: FimTask records, one JSON object per
line in `eval/tasks.jsonl`. Task types follow FIM-Eval's Python types we can find with tree-sitter
(single line, method body, if/for/while/try statement, via fim/spans.py) plus "random_span" (a
random character span over 1-3 lines, like training-time random FIM).

Design choices and their cost: tasks are spread round-robin over files (at most `max_per_file` per
file and type) so one big file cannot dominate a type; middles longer than `max_middle_chars`
are skipped so a tiny model's greedy decode stays cheap, which biases toward small structures;
the prefix/suffix are clipped to `max_context_chars` at line boundaries (keeping the END of the
prefix and the START of the suffix). Deterministic given (files, seed): input order does not matter.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from functools import cache
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from lightcoder.artifacts import AtomicFile, iter_jsonl
from lightcoder.fim.rules import RULES
from lightcoder.fim.spans import EVAL_KINDS, Span, find_parsed_spans, parse_source

if TYPE_CHECKING:
    from lightcoder.data.records import SourceFile

TASK_TYPES: tuple[str, ...] = EVAL_KINDS + ("random_span",)
# HumanEval-infilling's three formats (eval/tasks/infilling.py) as FIM tasks of the same table
HUMANEVAL_TYPES: dict[str, str] = {"he_single_line": "single-line", "he_multi_line": "multi-line",
                                   "he_random_span": "random-span"}
HUMANEVAL_PATH = "humaneval.py"  # HumanEval has no file path; the header still names the language
_DEDUP_TAIL_CHARS = 256


@dataclass
class FimTask:
    task_id: str
    task_type: str
    path: str
    language: str
    prefix: str
    middle: str
    suffix: str


def random_line_span(text: str, rng: random.Random, *, max_lines: int = 3) -> Span | None:
    """A random char span starting inside one non-blank line and ending 0..max_lines-1 lines later.

    Example: random_line_span("a = 1\\nb = 2\\n", rng) -> e.g. Span(2, 9, "random_span") ("= 1\\nb =")
    """
    starts, pos = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    bounds = []  # (content start after indentation, content end before the newline)
    for i, s in enumerate(starts):
        line = text[s : starts[i + 1] if i + 1 < len(starts) else len(text)]
        content = line.rstrip("\r\n")
        bounds.append((s + len(content) - len(content.lstrip()), s + len(content)))
    candidates = [i for i, (a, b) in enumerate(bounds) if b > a]
    if not candidates:
        return None
    first = rng.choice(candidates)
    last = min(first + rng.randint(1, max_lines) - 1, len(bounds) - 1)
    a, b = bounds[first]
    start = rng.randint(a, b - 1)
    if last == first:
        end = rng.randint(start + 1, b)
    else:
        end = rng.randint(starts[last], max(bounds[last][1], starts[last]))
    if not text[start:end].strip():
        return None
    return Span(start, end, "random_span")


def _clip_prefix(prefix: str, max_chars: int) -> str:
    if len(prefix) <= max_chars:
        return prefix
    cut = len(prefix) - max_chars
    newline = prefix.find("\n", cut)
    return prefix[newline + 1 :] if newline >= 0 else prefix[cut:]


def _clip_suffix(suffix: str, max_chars: int) -> str:
    if len(suffix) <= max_chars:
        return suffix
    newline = suffix.rfind("\n", 0, max_chars)
    return suffix[: newline + 1] if newline >= 0 else suffix[:max_chars]


def _file_spans(f, task_types: tuple[str, ...]) -> dict[str, list[Span]]:
    kinds = tuple(t for t in task_types if t in EVAL_KINDS)
    parsed = parse_source(f.content, f.language) if kinds else None
    return find_parsed_spans(parsed, kinds) if parsed is not None else {}


def build_fim_tasks(
    files: Iterable[SourceFile],
    *,
    per_type: int,
    seed: int,
    max_context_chars: int = 4096,
    max_middle_chars: int = 400,
    max_per_file: int = 2,
    task_types: tuple[str, ...] = TASK_TYPES,
) -> list[FimTask]:
    """Up to `per_type` tasks of each type, spread over files, deduplicated on (prefix tail, middle)."""
    for name, value in (("per_type", per_type), ("max_context_chars", max_context_chars),
                        ("max_middle_chars", max_middle_chars), ("max_per_file", max_per_file)):
        if value < 1:
            raise ValueError(f"build_fim_tasks: {name} must be >= 1, got {value}")
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown:
        raise ValueError(f"build_fim_tasks: unknown task types {unknown}; choose from {TASK_TYPES}")
    files = sorted((f for f in files if f.content.strip()), key=lambda f: (f.repo, f.path))
    spans = [_file_spans(f, task_types) for f in files]
    tasks: list[FimTask] = []
    for task_type in task_types:
        order = list(range(len(files)))
        random.Random(f"{seed}:{task_type}").shuffle(order)
        per_file: dict[int, list[Span]] = {}
        for i in order:
            rng = random.Random(f"{seed}:{task_type}:{files[i].path}")
            if task_type == "random_span":
                drawn = (random_line_span(files[i].content, rng) for _ in range(max_per_file))
                cands = [s for s in drawn if s is not None]
            else:
                cands = list(spans[i].get(task_type, []))
                rng.shuffle(cands)
            per_file[i] = [s for s in cands if s.end - s.start <= max_middle_chars][:max_per_file]
        seen: set[tuple[str, str]] = set()
        count = 0
        for round_ in range(max_per_file):
            for i in order:
                if count >= per_type:
                    break
                if round_ >= len(per_file[i]):
                    continue
                f, span = files[i], per_file[i][round_]
                prefix = _clip_prefix(f.content[: span.start], max_context_chars)
                middle = f.content[span.start : span.end]
                key = (prefix[-_DEDUP_TAIL_CHARS:], middle)
                if key in seen or not middle.strip():
                    continue
                seen.add(key)
                suffix = _clip_suffix(f.content[span.end :], max_context_chars)
                tasks.append(FimTask(f"{task_type}/{count:04d}", task_type, f.path, f.language,
                                     prefix, middle, suffix))
                count += 1
    return tasks


def humaneval_fim_tasks(*, per_type: int, seed: int, max_middle_chars: int = 400,
                        max_span_lines: int = 5) -> list[FimTask]:
    """HumanEval-infilling single-line, multi-line and random-span tasks as FimTasks, `per_type` of each.

    Each task is a different problem (problems shuffled by seed, one random span each), so a type
    spreads over HumanEval; middles over max_middle_chars and multi-line spans over max_span_lines
    are skipped, as build_fim_tasks caps its middles. FileNotFoundError without HumanEval data.
    """
    from lightcoder.eval.tasks.humaneval import read_humaneval
    from lightcoder.eval.tasks.infilling import build_infilling

    rows = read_humaneval()
    tasks: list[FimTask] = []
    for task_type, fmt in HUMANEVAL_TYPES.items():
        by_problem: dict[str, list[dict]] = {}
        for r in build_infilling(rows, fmt, max_span_lines=max_span_lines, seed=seed):
            middle = r["canonical_solution"]
            if not middle.strip() or len(middle) > max_middle_chars or (fmt == "multi-line" and middle.count("\n") < 2):
                continue  # multi-line: at least two lines (single lines are their own type)
            by_problem.setdefault("/".join(r["task_id"].split("/")[1:3]), []).append(r)  # "HumanEval/12"
        problems = sorted(by_problem)
        rng = random.Random(f"{seed}:{task_type}")
        rng.shuffle(problems)
        for count, problem in enumerate(problems[:per_type]):
            r = rng.choice(by_problem[problem])
            tasks.append(FimTask(f"{task_type}/{count:04d}", task_type, HUMANEVAL_PATH, "Python",
                                 r["prompt"], r["canonical_solution"], r["suffix"]))
    return tasks


def write_tasks(tasks: Iterable[FimTask], path: str | Path) -> int:
    """Write tasks as JSONL atomically (artifacts.AtomicFile); returns the number written."""
    n = 0
    with AtomicFile(path, "w") as fh:
        for task in tasks:
            fh.write(json.dumps(asdict(task), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_tasks(path: str | Path) -> list[FimTask]:
    """Read tasks written by `write_tasks`; ValueError naming the line on a malformed record,
    FileNotFoundError saying which command writes the file when it is missing.

    The file is written atomically, so a torn last line is corruption too, not a crash to tolerate.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"FIM tasks file {path} not found: a run's eval stage writes RUN/eval/tasks.jsonl "
                                "(`lightcoder eval --out RUN`), `lightcoder finetune` its RUN/eval/<set>_tasks.jsonl")
    names = [f.name for f in fields(FimTask)]
    tasks = []
    for lineno, record in iter_jsonl(path, tolerate_torn_tail=False, hint="rebuild the tasks file"):
        missing = [n for n in names if not isinstance(record.get(n), str)]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing or non-string field(s) {missing}; "
                             "rebuild the tasks file with build_fim_tasks")
        tasks.append(FimTask(**{n: record[n] for n in names}))
    return tasks


# ---- FIM-Eval records (aiXcoder's 13 task types, eval/tasks/fim_eval.py) ----
#
# The same node tables as the run's tasks: fim/rules.py RULES[language] (statements, function_body),
# parsed with fim/spans.py. Records are aiXcoder's format (task_id, task_type, pre_mask_code,
# post_mask_code, canonical_solution) plus language and path. What each type masks:
#     method_signature      a function's header: from its first token to where its body starts
#     method_body           a function's body (C-like: inside the braces; Python: the indented block)
#     single_line           one whole body line that is not a comment
#     method_with_comment   a whole function with its leading comment (or Python docstring)
#     empty                 a cursor between two body lines; the right middle is ""
#     method_body_top/mid/bottom   the first / middle / last third of a body's lines (>= 1 each)
#     if / for / while / try / switch   a whole statement of that kind (switch: not Python)

FIM_EVAL_TYPES = ("method_signature", "method_body", "single_line", "method_with_comment", "empty",
                  "method_body_top", "method_body_mid", "method_body_bottom",
                  "if", "for", "while", "try", "switch")
FIM_EVAL_LANGUAGES = {"python": "Python", "java": "Java", "javascript": "JavaScript", "js": "JavaScript",
                      "cpp": "C++", "c++": "C++", "cplus": "C++"}
FIM_EVAL_PATHS = {"Python": "test.py", "Java": "test.java", "JavaScript": "test.js", "C++": "test.cpp"}
# What FIM-Eval counts beyond RULES' eval kinds: do-while loops as "while", switch statements, Java
# constructors and JS generators as functions. Every name is in RULES[language].structural
# (tests/eval/test_builders.py), whose names tests/fim/test_sfim_languages.py checks in the grammar.
FIM_EVAL_EXTRA_NODES = {
    "Java": {"function": ("constructor_declaration",), "while": ("do_statement",), "switch": ("switch_expression",)},
    "JavaScript": {"function": ("generator_function_declaration",), "while": ("do_statement",),
                   "switch": ("switch_statement",)},
    "C++": {"while": ("do_statement",), "switch": ("switch_statement",)},
}
_COMMENT_NODES = frozenset({"comment", "line_comment", "block_comment"})


def normalize_language(language: str) -> str:
    """FIM-Eval's language name ("python", "cplus", ...) as ours; ValueError for the others."""
    name = FIM_EVAL_LANGUAGES.get(language.lower(), language)
    if name not in FIM_EVAL_PATHS:
        raise ValueError(f"FIM-Eval builder supports {sorted(FIM_EVAL_PATHS)}, not {language!r}")
    return name


@cache
def fim_eval_nodes(language: str) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """(function node types, {statement type: node types}) for one language, from RULES."""
    rules, extra = RULES[language], FIM_EVAL_EXTRA_NODES.get(language, {})
    functions = frozenset(re.findall(r"\((\w+) body:", rules.function_body)) | set(extra.get("function", ()))
    statements = {kind.removesuffix("_statement"): frozenset(types) for kind, types in rules.statements.items()}
    for kind in ("while", "switch"):
        if kind in extra:
            statements[kind] = statements.get(kind, frozenset()) | set(extra[kind])
    return functions, statements


def _walk(node):
    """Every node under `node`, parents before children, in source order."""
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
    """(start, end) byte ranges of the non-blank whole lines inside a body (braces excluded)."""
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


def _statement_span(src: bytes, node) -> tuple[int, int]:
    """A statement from its line start (when only indentation precedes it) to its end."""
    start = _line_start(src, node.start_byte)
    return (start if src[start:node.start_byte].strip() == b"" else node.start_byte), node.end_byte


def _function_spans(out: dict, src: bytes, node, body, language: str) -> None:
    """Add one function's signature, body, line, cursor, thirds and commented-function spans to `out`."""
    out["method_signature"].append((node.start_byte, body.start_byte))
    lines = _body_lines(src, body, language)
    if not lines:
        return
    python = language == "Python"
    out["method_body"].append((lines[0][0], lines[-1][1]) if python else (body.start_byte + 1, body.end_byte - 1))
    out["single_line"] += [line for line in lines if not src[line[0]:line[1]].strip().startswith((b"#", b"//"))]
    out["empty"] += [(s, s) for s, _ in lines[1:]]
    if len(lines) >= 3:
        third = len(lines) // 3
        out["method_body_top"].append((lines[0][0], lines[third - 1][1]))
        out["method_body_mid"].append((lines[third][0], lines[-third - 1][1]))
        out["method_body_bottom"].append((lines[-third][0], lines[-1][1]))
    prev, first = node.prev_sibling, (body.named_children or [None])[0]
    docstring = (python and first is not None and first.type == "expression_statement"
                 and first.named_children and first.named_children[0].type == "string")
    if prev is not None and prev.type in _COMMENT_NODES:
        while prev.prev_sibling is not None and prev.prev_sibling.type in _COMMENT_NODES:
            prev = prev.prev_sibling  # a run of comments above the function is one comment
        out["method_with_comment"].append((prev.start_byte, node.end_byte))
    elif docstring:
        out["method_with_comment"].append((node.start_byte, node.end_byte))


def spans_for_file(content: str, language: str) -> dict[str, list[tuple[int, int]]]:
    """UTF-8 byte spans per FIM-Eval type in one file, in source order (empty spans: start == end)."""
    language = normalize_language(language)
    src = content.encode("utf-8")
    functions, statements = fim_eval_nodes(language)
    out: dict[str, list[tuple[int, int]]] = {t: [] for t in FIM_EVAL_TYPES}
    for node in _walk(parse_source(content, language).tree.root_node):
        if node.has_error:
            continue
        for kind, types in statements.items():
            if node.type in types:
                out[kind].append(_statement_span(src, node))
        body = node.child_by_field_name("body") if node.type in functions else None
        if body is not None and body.end_byte - body.start_byte >= 2:
            _function_spans(out, src, node, body, language)
    return out


def _fim_eval_record(file: tuple[str, str, str], span: tuple[int, int], task_type: str, count: int,
                     max_context_chars: int) -> dict:
    path, language, content = file
    src, (a, b) = content.encode("utf-8"), span
    return {"task_id": f"{language}/{task_type}/{count}", "task_type": task_type,
            "pre_mask_code": src[:a].decode("utf-8", "replace")[-max_context_chars:],
            "post_mask_code": src[b:].decode("utf-8", "replace")[:max_context_chars],
            "canonical_solution": src[a:b].decode("utf-8", "replace"), "language": language, "path": path}


def build_fim_eval(files: Iterable[tuple[str, str, str]], *, per_type: int = 10, seed: int = 0,
                   max_middle_chars: int = 2000, max_context_chars: int = 16000,
                   task_types: tuple[str, ...] = FIM_EVAL_TYPES) -> list[dict]:
    """FIM-Eval records from (path, language, content) triples: up to `per_type` per (language, type).

    Cases are drawn round-robin over files in a seeded order (at most one per file per round), so
    one big file cannot fill a type. Types a language has no syntax for (Python switch) are absent.
    Example: build_fim_eval([("a.py", "Python", source)], per_type=5)[0]["canonical_solution"]
    """
    if per_type < 1:
        raise ValueError(f"build_fim_eval: per_type must be >= 1, got {per_type}")
    unknown = [t for t in task_types if t not in FIM_EVAL_TYPES]
    if unknown:
        raise ValueError(f"build_fim_eval: unknown task types {unknown}; choose from {FIM_EVAL_TYPES}")
    files = sorted(((p, normalize_language(lang), c) for p, lang, c in files), key=lambda f: (f[1], f[0]))
    per_file = [spans_for_file(content, language) for _, language, content in files]
    for (path, _, _), spans in zip(files, per_file):
        for task_type, items in spans.items():
            random.Random(f"{seed}:{path}:{task_type}").shuffle(items)
    records = []
    for language in sorted({f[1] for f in files}):
        order = [i for i, f in enumerate(files) if f[1] == language]
        random.Random(f"{seed}:{language}").shuffle(order)
        for task_type in task_types:
            count, round_ = 0, 0
            while count < per_type and any(len(per_file[i][task_type]) > round_ for i in order):
                for i in order:  # one span per file per round
                    if count >= per_type or len(per_file[i][task_type]) <= round_:
                        continue
                    record = _fim_eval_record(files[i], per_file[i][task_type][round_], task_type, count,
                                              max_context_chars)
                    middle = record["canonical_solution"]
                    if len(middle) > max_middle_chars or (task_type != "empty" and not middle.strip()):
                        continue
                    records.append(record)
                    count += 1
                round_ += 1
    return records
