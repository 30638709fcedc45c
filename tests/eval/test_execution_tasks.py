"""Every execution task: canonical solutions pass 100 %, empty completions score as they should."""

import json

import pytest

from lightcoder.eval.runner import execute, reference_samples, score
from lightcoder.eval.runtimes import runtime_for
from lightcoder.eval.tasks import get_task, humaneval_path

try:
    humaneval_path()
    HAVE_HUMANEVAL = True
except FileNotFoundError:
    HAVE_HUMANEVAL = False
needs_humaneval = pytest.mark.skipif(not HAVE_HUMANEVAL, reason="HumanEval.jsonl.gz not on this machine")


def run_reference(task, tmp_path, *, empty=False, workers=2):
    reference_samples(task, tmp_path, empty=empty)
    execute(tmp_path, workers=workers)
    return score(tmp_path)


def failures(out_dir):
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()[1:]]
    return [(r["task_id"], r.get("stderr_tail", "")[-300:]) for r in rows if not r.get("passed")]


@needs_humaneval
@pytest.mark.slow
def test_humaneval_canonical_solutions_all_pass(tmp_path):
    scores = run_reference(get_task("humaneval"), tmp_path)
    total = scores["summary"]["total"]
    assert total["n_problems"] == 164
    assert total["pass@1"] == 100.0, failures(tmp_path)


@needs_humaneval
@pytest.mark.parametrize("name,limit", [("mbpp", None), ("humaneval-infill-single-line", 25),
                                        ("humaneval-infill-multi-line", 25), ("humaneval-infill-random-span", 25)])
def test_python_task_canonical_solutions_all_pass(name, limit, tmp_path):
    scores = run_reference(get_task(name, limit=limit), tmp_path)
    total = scores["summary"]["total"]
    assert total["pass@1"] == 100.0, failures(tmp_path)
    if "em" in total:
        assert total["em"] == 100.0


@pytest.mark.parametrize("lang", ["js", pytest.param("java", marks=pytest.mark.slow),
                                  pytest.param("cpp", marks=pytest.mark.slow)])
def test_multipl_e_canonical_solutions_all_pass(lang, tmp_path):
    task = get_task(f"multipl-e-{lang}")
    if not runtime_for(task.problems()[0].language).available():
        pytest.skip(f"no {lang} runtime")
    scores = run_reference(task, tmp_path)
    assert scores["summary"]["total"]["n_problems"] == 12
    assert scores["summary"]["total"]["pass@1"] == 100.0, failures(tmp_path)


@needs_humaneval
def test_empty_completions_fail_execution_and_exact_match(tmp_path):
    scores = run_reference(get_task("humaneval", limit=8), tmp_path / "he", empty=True)
    assert scores["summary"]["total"]["pass@1"] == 0.0
    scores = run_reference(get_task("humaneval-infill-single-line", limit=8), tmp_path / "inf", empty=True)
    assert scores["summary"]["total"]["pass@1"] == 0.0 and scores["summary"]["total"]["em"] == 0.0


def test_empty_js_completion_is_a_recorded_failure_not_a_crash(tmp_path):
    scores = run_reference(get_task("multipl-e-js", limit=3), tmp_path, empty=True)
    assert scores["summary"]["total"]["pass@1"] == 0.0
    assert scores["summary"]["total"]["statuses"] == {"failed": 3}


@needs_humaneval
def test_stop_sequences_cut_the_completion():
    task = get_task("humaneval", limit=1)
    problem = task.problems()[0]
    raw = "    return True\n\ndef helper():\n    pass\n"
    assert task.postprocess(problem, raw) == "    return True\n"
    single = get_task("humaneval-infill-single-line", limit=1)
    assert single.postprocess(single.problems()[0], "\n    x = 1\n    y = 2\n") == "\n    x = 1\n"


@needs_humaneval
def test_infilling_formats_put_the_solution_back_together():
    from lightcoder.eval.tasks.humaneval import read_humaneval
    from lightcoder.eval.tasks.infilling import build_infilling

    rows = read_humaneval()[:10]
    by_id = {r["task_id"]: r for r in rows}
    for fmt in ("single-line", "multi-line", "random-span"):
        records = build_infilling(rows, fmt)
        assert records, fmt
        for rec in records:
            row = by_id[rec["task_id"].split("/", 1)[1].rsplit("/", 1)[0]]
            assert rec["prompt"] + rec["canonical_solution"] + rec["suffix"] == row["prompt"] + row["canonical_solution"]
            assert rec["canonical_solution"].strip()


def test_santacoder_fim_scores_exact_line_match():
    task = get_task("santacoder-fim-java", limit=5)
    problems = task.problems()
    assert len(problems) == 5
    p = problems[0]
    assert task.match_scores(p, task.postprocess(p, p.reference + "junk on the next line\n"))["em"]
    assert not task.match_scores(p, "")["em"]


def test_unknown_task_lists_the_registered_ones():
    with pytest.raises(ValueError, match="humaneval"):
        get_task("no-such-task")


@needs_humaneval
def test_built_infilling_sets_have_the_official_sizes():
    from lightcoder.eval.tasks.humaneval import read_humaneval
    from lightcoder.eval.tasks.infilling import build_infilling

    rows = read_humaneval()
    sizes = {fmt: len(build_infilling(rows, fmt)) for fmt in ("single-line", "multi-line", "random-span")}
    assert sizes == {"single-line": 1033, "multi-line": 5815, "random-span": 1640}  # Bavarian et al. 2022
