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
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from lightcoder.artifacts import AtomicFile, iter_jsonl
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
    """Read tasks written by `write_tasks`; ValueError naming the line on a malformed record.

    The file is written atomically, so a torn last line is corruption too, not a crash to tolerate.
    """
    names = [f.name for f in fields(FimTask)]
    tasks = []
    for lineno, record in iter_jsonl(path, tolerate_torn_tail=False, hint="rebuild the tasks file"):
        missing = [n for n in names if not isinstance(record.get(n), str)]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing or non-string field(s) {missing}; "
                             "rebuild the tasks file with build_fim_tasks")
        tasks.append(FimTask(**{n: record[n] for n in names}))
    return tasks
