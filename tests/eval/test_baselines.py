import pytest

from lightcoder.eval.baselines import (
    EmptyPredictor,
    MostCommonLinePredictor,
    OraclePredictor,
    cursor_indent,
    fit_from_corpus,
)
from lightcoder.eval.builders import FimTask
from lightcoder.infer.completer import Completion

TRAIN = [
    "# license line\n# license line\n# license line\nimport os\n\n\ndef f():\n    pass\n",
    "def g():\n    pass\n    # license line\n",
]


def test_most_common_line_skips_comments_and_blanks():
    predictor = MostCommonLinePredictor().fit(TRAIN)
    assert predictor.line == "pass"  # "# license line" appears 4 times but is a comment
    assert predictor.counts["pass"] == 2 and "" not in predictor.counts


def test_most_common_line_ties_break_alphabetically_and_updates_after_more_fitting():
    predictor = MostCommonLinePredictor().fit(["b = 1\na = 1\n"])
    assert predictor.line == "a = 1"
    assert predictor.fit(["b = 1\n"]).line == "b = 1"


def test_unfitted_predictor_explains():
    with pytest.raises(ValueError, match="fit"):
        MostCommonLinePredictor().complete("x")


def test_comment_syntax_follows_language():
    predictor = MostCommonLinePredictor().fit(["// c\n// c\nx++;\n"], language="C++")
    assert predictor.line == "x++;"


@pytest.mark.parametrize("prefix, indent", [
    ("def f():\n    x = 1\n", "    "),  # new line: indent like the last code line
    ("def f():\n    x = 1\n\n", "    "),  # blank lines are skipped
    ("def f():\n    ", ""),  # the cursor is already indented
    ("def f():\n    x = ", ""),  # mid-line
    ("", ""),
])
def test_cursor_indent(prefix, indent):
    assert cursor_indent(prefix) == indent


def test_complete_returns_a_completion_at_the_cursor_indent():
    predictor = MostCommonLinePredictor().fit(TRAIN)
    out = predictor.complete("def h():\n    y = 2\n", "\n", path="a.py", max_new_tokens=5, mode="psm")
    assert isinstance(out, Completion)
    assert out.text == "    pass" and out.new_tokens == 0 and out.stop_reason == "stop"
    assert predictor.complete("def h():\n    ").text == "pass"


def test_empty_and_oracle_predictors():
    task = FimTask(task_id="t", task_type="single_line", path="a.py", language="Python",
                   prefix="x = ", middle="1", suffix="\n")
    assert EmptyPredictor().complete(task.prefix, task.suffix).text == ""
    oracle = OraclePredictor([task])
    assert oracle.complete(prefix=task.prefix, suffix=task.suffix, path=task.path).text == "1"
    with pytest.raises(ValueError, match="no task"):
        oracle.complete(prefix="y = ", suffix="\n", path="a.py")


def test_fit_from_corpus_reads_only_the_train_split(tmp_path):
    from lightcoder.data.records import SourceFile, write_parquet

    def source(split, content):
        return SourceFile(repo="r", path=f"r/{split}.py", language="Python", content=content, split=split)

    write_parquet([source("train", "else:\nelse:\npass\n")], tmp_path / "train-00000.parquet")
    write_parquet([source("test", "x = 1\nx = 1\nx = 1\n")], tmp_path / "test-00000.parquet")
    (tmp_path / "DONE").write_text("{}")
    assert MostCommonLinePredictor.fit_from_corpus(tmp_path).line == "else:"
    assert fit_from_corpus(tmp_path).counts == MostCommonLinePredictor.fit_from_corpus(tmp_path).counts
