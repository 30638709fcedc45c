import glob
import json
import os
import random
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from lightcoder.data.records import SourceFile
from lightcoder.eval.builders import (
    TASK_TYPES,
    FimTask,
    build_fim_tasks,
    random_line_span,
    read_tasks,
    write_tasks,
)
from lightcoder.fim.spans import has_syntax_error


@cache
def corpus() -> tuple[SourceFile, ...]:
    root = os.path.dirname(os.__file__)
    paths = sorted(glob.glob(os.path.join(root, "*.py")))[::6]
    out = []
    for p in paths:
        rel = os.path.relpath(p, root)
        content = Path(p).read_text(encoding="utf-8")
        out.append(SourceFile(repo=rel[:-3], path=rel, language="Python", content=content))
    return tuple(out)


@cache
def tasks_for(seed: int, per_type: int = 8) -> tuple[FimTask, ...]:
    return tuple(build_fim_tasks(corpus(), per_type=per_type, seed=seed, max_context_chars=1500))


def test_task_types_contract():
    assert TASK_TYPES == ("single_line", "method_body", "if_statement", "for_statement",
                          "while_statement", "try_statement", "random_span")


def test_tasks_are_contiguous_clipped_slices():
    tasks = tasks_for(0)
    by_path = {f.path: f.content for f in corpus()}
    counts = Counter(t.task_type for t in tasks)
    assert counts == {t: 8 for t in TASK_TYPES}
    assert len({t.task_id for t in tasks}) == len(tasks)
    per_file = Counter((t.task_type, t.path) for t in tasks)
    assert max(per_file.values()) <= 2  # spread over files
    for t in tasks:
        content = by_path[t.path]
        assert t.prefix + t.middle + t.suffix in content
        assert len(t.prefix) <= 1500 and len(t.suffix) <= 1500
        assert t.middle.strip() and len(t.middle) <= 400
        at = content.index(t.prefix + t.middle + t.suffix) + len(t.prefix)
        # clipping keeps the END of the prefix and the START of the suffix, at line boundaries
        assert content[:at].endswith(t.prefix) and content[at + len(t.middle):].startswith(t.suffix)
        assert t.prefix == content[:at] or content[at - len(t.prefix) - 1] == "\n"
        assert t.suffix == content[at + len(t.middle):] or t.suffix.endswith("\n")
        if t.task_type == "single_line":
            assert "\n" not in t.middle
        elif t.task_type in ("if_statement", "for_statement", "while_statement", "try_statement"):
            assert t.middle.startswith(t.task_type.split("_")[0])
        if t.task_type not in ("random_span", "single_line"):
            indent = t.prefix[t.prefix.rfind("\n") + 1:]
            assert not indent.strip()
            assert not has_syntax_error(
                "if True:\n" + indent + t.middle + "\n" if indent else t.middle + "\n", "Python")


def test_deterministic_and_order_independent():
    shuffled = list(corpus())
    random.Random(3).shuffle(shuffled)
    again = build_fim_tasks(shuffled, per_type=8, seed=0, max_context_chars=1500)
    assert again == list(tasks_for(0))
    assert [t.middle for t in tasks_for(1)] != [t.middle for t in tasks_for(0)]


def test_dedup_identical_files():
    f = corpus()[1]
    twins = [SourceFile(repo=f"r{i}", path=f"r{i}/{f.path}", language="Python", content=f.content)
             for i in range(4)]
    tasks = build_fim_tasks(twins, per_type=50, seed=0, max_context_chars=500,
                            task_types=("single_line", "if_statement"))
    keys = [(t.prefix[-256:], t.middle) for t in tasks]
    assert len(keys) == len(set(keys)) and tasks
    assert {t.path for t in tasks} != {twins[0].path}  # still drawn from several files


def test_limits_and_bad_arguments():
    tasks = build_fim_tasks(corpus(), per_type=5, seed=0, max_context_chars=200,
                            max_middle_chars=60, max_per_file=1, task_types=("method_body", "random_span"))
    assert all(len(t.middle) <= 60 and len(t.prefix) <= 200 for t in tasks)
    assert len({t.path for t in tasks if t.task_type == "random_span"}) == 5
    assert build_fim_tasks([], per_type=3, seed=0, max_context_chars=100) == []
    with pytest.raises(ValueError, match="per_type"):
        build_fim_tasks(corpus(), per_type=0, seed=0, max_context_chars=100)
    with pytest.raises(ValueError, match="unknown task types"):
        build_fim_tasks(corpus(), per_type=1, seed=0, max_context_chars=100, task_types=("switch",))


def test_random_line_span():
    text = "a = 1\n\n    b = [\n        2,\n    ]\nc = 3\n"
    rng = random.Random(0)
    for _ in range(500):
        span = random_line_span(text, rng)
        if span is None:
            continue
        middle = text[span.start:span.end]
        assert middle.strip() and middle.count("\n") <= 2 and span.kind == "random_span"
    assert random_line_span("\n  \n", rng) is None


def test_write_read_round_trip(tmp_path):
    tasks = list(tasks_for(0))[:10] + [FimTask("x/1", "single_line", "a/ü.py", "Python", "p😀", "m\n", "")]
    path = tmp_path / "eval" / "tasks.jsonl"
    assert write_tasks(tasks, path) == len(tasks)
    assert read_tasks(path) == tasks
    assert os.listdir(path.parent) == ["tasks.jsonl"]
    path.write_text(path.read_text() + json.dumps({"task_id": "y"}) + "\n")
    with pytest.raises(ValueError, match=r"tasks.jsonl:12: missing"):
        read_tasks(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r":1: not valid JSON"):
        read_tasks(path)
    with pytest.raises(FileNotFoundError, match=r"missing.jsonl not found: a run's eval stage writes"):
        read_tasks(tmp_path / "missing.jsonl")


def test_humaneval_fim_tasks_are_spans_of_the_canonical_solutions():
    from lightcoder.eval.builders import HUMANEVAL_TYPES, humaneval_fim_tasks
    from lightcoder.eval.tasks.humaneval import read_humaneval

    try:
        rows = read_humaneval()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    whole = {r["prompt"] + r["canonical_solution"] for r in rows}
    tasks = humaneval_fim_tasks(per_type=12, seed=0)
    by_type = {t: [x for x in tasks if x.task_type == t] for t in HUMANEVAL_TYPES}
    assert all(len(v) == 12 for v in by_type.values())
    for task in tasks:
        assert task.prefix + task.middle + task.suffix in whole and task.middle.strip()
        assert task.language == "Python" and len(task.middle) <= 400
    assert all(t.middle.count("\n") <= 1 for t in by_type["he_single_line"])
    assert all(t.middle.count("\n") >= 2 for t in by_type["he_multi_line"])
    assert len({t.prefix[:40] for t in by_type["he_single_line"]}) == 12  # twelve different problems
    assert humaneval_fim_tasks(per_type=12, seed=0) == tasks


# ---- FIM-Eval records: the same node tables (fim/rules.py) ----

def test_fim_eval_nodes_come_from_rules_plus_named_extras():
    from lightcoder.eval.builders import FIM_EVAL_EXTRA_NODES, fim_eval_nodes
    from lightcoder.fim.rules import RULES

    for language, extra in FIM_EVAL_EXTRA_NODES.items():
        names = {name for names in extra.values() for name in names}
        assert names <= set(RULES[language].structural), language  # grammar-checked names only
    functions, statements = fim_eval_nodes("Java")
    assert functions == {"method_declaration", "constructor_declaration"}
    assert statements["for"] == set(RULES["Java"].statements["for_statement"])
    assert statements["while"] == {"while_statement", "do_statement"}
    assert "switch" not in fim_eval_nodes("Python")[1]


def test_fim_eval_counts_do_while_constructors_and_generators():
    from lightcoder.eval.builders import build_fim_eval

    java = "class A {\n    A() {\n        int i = 0;\n        do {\n            i++;\n        } while (i < 3);\n    }\n}\n"
    js = "function* gen() {\n    yield 1;\n}\n"
    rows = build_fim_eval([("A.java", "java", java), ("g.js", "javascript", js)], per_type=5)
    by_type = {(r["language"], r["task_type"]): r["canonical_solution"] for r in rows}
    assert by_type[("Java", "while")] == "        do {\n            i++;\n        } while (i < 3);"
    assert by_type[("Java", "method_signature")] == "A() "
    assert by_type[("JavaScript", "method_body")] == "\n    yield 1;\n"
