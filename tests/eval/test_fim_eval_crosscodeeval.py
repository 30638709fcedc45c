"""FIM-Eval builder (13 task types, 4 languages) and format; CrossCodeEval metrics and BM25."""

import json
import math

import pytest

from lightcoder.eval.builders import FIM_EVAL_TYPES as TASK_TYPES
from lightcoder.eval.builders import build_fim_eval, spans_for_file
from lightcoder.eval.tasks import get_task
from lightcoder.eval.tasks.crosscodeeval import BM25, code_scores, identifier_scores, retrieve
from lightcoder.eval.tasks.fim_eval import read_fim_eval

JAVA = """
class A {
    // adds numbers, with a cap
    public int add(int a, int b) {
        int c = a + b;
        if (c > 10) { c = 10; }
        for (int i = 0; i < 3; i++) { c += i; }
        while (c > 100) { c--; }
        try { c = c / 1; } catch (Exception e) { c = 0; }
        switch (c) { case 1: c = 2; break; default: break; }
        return c;
    }
}
"""
CPP = JAVA.replace("class A {", "").replace("public ", "").replace("catch (Exception e)", "catch (...)").rstrip()[:-1]
JS = """
// adds numbers
function add(a, b) {
  let c = a + b;
  if (c > 10) { c = 10; }
  for (let i = 0; i < 3; i++) { c += i; }
  while (c > 100) { c--; }
  try { c = c / 1; } catch (e) { c = 0; }
  switch (c) { case 1: c = 2; break; default: break; }
  return c;
}
"""
PY = '''
def add(a, b):
    """Adds numbers, with a cap."""
    c = a + b
    if c > 10:
        c = 10
    for i in range(3):
        c += i
    while c > 100:
        c -= 1
    try:
        c = c // 1
    except ZeroDivisionError:
        c = 0
    return c
'''
FILES = [("A.java", "Java", JAVA), ("a.cpp", "C++", CPP), ("a.js", "JavaScript", JS), ("a.py", "Python", PY)]


def test_builder_finds_all_13_types_in_java_js_cpp_and_12_in_python():
    records = build_fim_eval(FILES, per_type=1)
    by_language = {}
    for r in records:
        by_language.setdefault(r["language"], set()).add(r["task_type"])
    for language in ("Java", "JavaScript", "C++"):
        assert by_language[language] == set(TASK_TYPES), language
    assert by_language["Python"] == set(TASK_TYPES) - {"switch"}


def test_every_record_puts_its_file_back_together_and_is_in_aixcoder_format():
    sources = {path: text for path, _, text in FILES}
    for r in build_fim_eval(FILES, per_type=3):
        assert r["pre_mask_code"] + r["canonical_solution"] + r["post_mask_code"] == sources[r["path"]]
        assert (r["canonical_solution"] == "") == (r["task_type"] == "empty")
    sig = [r for r in build_fim_eval(FILES, per_type=1) if r["task_type"] == "method_signature"]
    assert {r["canonical_solution"].strip() for r in sig} >= {"public int add(int a, int b)", "def add(a, b):"}


def test_builder_is_deterministic_and_seeded():
    assert build_fim_eval(FILES, per_type=2, seed=1) == build_fim_eval(list(reversed(FILES)), per_type=2, seed=1)


def test_fim_eval_task_reads_the_format_and_scores_reference_and_empty(tmp_path):
    path = tmp_path / "python_test.jsonl"
    rows = build_fim_eval(FILES, per_type=1)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_fim_eval(path) == rows
    task = get_task("fim-eval", data=str(path))
    for p in task.problems():
        ref = task.match_scores(p, "  " + p.reference + "\n")
        assert ref["em"] and ref["bleu"] == 100.0 and ref["codebleu"] == pytest.approx(100.0)
        empty = task.match_scores(p, "")
        assert empty["em"] == (p.task_type == "empty")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_fim_eval(bad)


def test_fim_eval_paths_follow_the_protocol():
    task = get_task("fim-eval", records=build_fim_eval(FILES, per_type=1))
    assert {p.path for p in task.problems()} == {"test.java", "test.cpp", "test.js", "test.py"}
    assert task.mode == "psm" and task.max_new_tokens == 512


def test_single_line_spans_are_whole_lines():
    spans = spans_for_file(PY, "python")["single_line"]
    data = PY.encode()
    assert len(spans) == 13  # every line of add()'s body, docstring included
    for a, b in spans:
        assert a == 0 or data[a - 1:a] == b"\n"
        assert data[b - 1:b] == b"\n"


# ---- CrossCodeEval ----

def test_bm25_matches_the_hand_computed_okapi_score():
    idf = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))
    expected = idf * 1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / 1.5))
    assert BM25([["a", "b"], ["c"]]).scores(["a"]) == pytest.approx([expected, 0.0])


def test_identifier_match_and_edit_similarity_by_hand():
    assert identifier_scores("x = foo(a, b)", "x = foo(a, c)") == {"id_em": False, "id_f1": pytest.approx(0.75)}
    scores = code_scores("abd\nmore", "abc")
    assert scores["es"] == pytest.approx(100 * 2 / 3) and not scores["em"]  # only the first line counts
    assert code_scores("  return self.x\n", "return self.x")["em"]
    assert code_scores("x = foo(a, b)", "x = foo(a, c)")["id_f1"] == pytest.approx(75.0)


def test_bm25_retrieval_puts_the_definition_into_the_prompt(tmp_path):
    repo = tmp_path / "repos" / "proj"
    repo.mkdir(parents=True)
    (repo / "geometry.py").write_text("def triangle_area(base, height):\n    return base * height / 2\n")
    (repo / "noise.py").write_text("def unrelated():\n    return 42\n")
    (repo / "main.py").write_text("from geometry import triangle_area\n")
    record = {"prompt": "from geometry import triangle_area\n\nbase, height = 3, 4\narea = ",
              "groundtruth": "triangle_area(base, height)", "right_context": "\nprint(area)\n",
              "metadata": {"task_id": "proj/0", "repository": "proj", "file": "main.py"}}
    task = get_task("crosscodeeval", records=[record], repo_root=str(tmp_path / "repos"))
    problem = task.problems()[0]
    assert "# the below code fragment can be found in: geometry.py" in problem.prompt
    assert problem.prompt.endswith(record["prompt"])
    assert problem.extra["retrieved"][0][0] == "geometry.py"
    infile = get_task("crosscodeeval", records=[record], setting="infile").problems()[0]
    assert infile.prompt == record["prompt"]
    assert task.match_scores(problem, "triangle_area(base, height)\nprint(1)")["em"]
    assert retrieve("zzz", [("a.py", "x = 1")]) == []


def test_records_built_from_repositories_need_cross_file_context(tmp_path):
    from lightcoder.eval.tasks.crosscodeeval import build_from_repos

    repo = tmp_path / "repos" / "proj"
    repo.mkdir(parents=True)
    (repo / "geometry.py").write_text("def triangle_area(base, height):\n    return base * height / 2\n")
    (repo / "main.py").write_text("from geometry import triangle_area\n\n\ndef run(b, h):\n"
                                  "    area = triangle_area(b, h)\n    return area\n")
    records = build_from_repos(tmp_path / "repos")
    assert len(records) == 1
    rec = records[0]
    assert rec["groundtruth"] == "area = triangle_area(b, h)" and rec["metadata"]["file"] == "main.py"
    assert rec["prompt"] + rec["groundtruth"] + rec["right_context"] == (repo / "main.py").read_text()
    task = get_task("crosscodeeval", data=str(tmp_path / "repos"))
    problem = task.problems()[0]
    assert "geometry.py" in problem.prompt and task.match_scores(problem, problem.reference)["em"]
