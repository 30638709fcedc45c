"""The run's FIM tasks as a registered runner task: same numbers as the eval stage's harness."""

import pytest

from lightcoder.eval.builders import FimTask, write_tasks
from lightcoder.eval.harness import run_fim_eval
from lightcoder.eval.runner import GenerationSettings, run_task
from lightcoder.eval.tasks import get_task
from lightcoder.infer.completer import Completion

TASKS = [FimTask(f"single_line/{i:04d}", "single_line", f"pkg/m{i}.py", "Python", f"def f{i}():\n    ",
                 f"return {i}", "\n") for i in range(3)] + [
    FimTask("if_statement/0000", "if_statement", "pkg/n.py", "Python", "x = 1\n", "if x:\n    y = 2\n", "z = 3\n"),
    FimTask("random_span/0000", "random_span", "a.xyz", "NoGrammar", "a", "bc", "d")]


class Model:
    """Right on single_line 0, an unparsable answer on 1, runs out of tokens on the rest; has bits."""

    def complete(self, prefix, suffix="", *, path="", max_new_tokens=64, mode="spm", temperature=0.0):
        text = {"pkg/m0.py": "return 0", "pkg/m1.py": "return ("}.get(path, "pass  # long")
        return Completion(text=text, prompt_tokens=5, new_tokens=2, seconds=0.0,
                          stop_reason="stop" if path.startswith("pkg/m") else "length")

    def middle_bits(self, prefix, middle, suffix="", *, path="", mode="spm", max_new_tokens=64):
        return 3.0 * len(middle)


def test_run_fim_task_scores_like_the_stage_harness(tmp_path):
    write_tasks(TASKS, tmp_path / "tasks.jsonl")
    harness = run_fim_eval(Model(), TASKS, tmp_path / "harness", name="trained", max_new_tokens=16, mode="spm")
    task = get_task("run-fim", data=str(tmp_path / "tasks.jsonl"), max_new_tokens=16)
    runner = run_task(task, Model(), tmp_path / "runner", GenerationSettings(model_id="m"), workers=1)
    assert runner["fim_summary"] == harness["summary"]
    table = runner["fim_summary"]
    assert list(table) == ["single_line", "if_statement", "random_span", "total"]
    assert table["single_line"]["em"] == pytest.approx(100 / 3)
    assert table["single_line"]["syntax"] == pytest.approx(200 / 3)
    assert table["if_statement"]["stop_rate"] == 0.0 and table["random_span"]["syntax"] is None
    assert table["total"]["bpb"] == 3.0  # 3 bits per char of ASCII middles
    assert runner["summary"]["total"]["stopped"] == 60.0  # the runner's own means agree


def test_run_fim_baseline_has_no_bits(tmp_path):
    write_tasks(TASKS[:1], tmp_path / "tasks.jsonl")

    class Baseline:
        def complete(self, prefix, suffix="", *, path="", max_new_tokens=64, mode="spm", temperature=0.0):
            return Completion(text="return 0", prompt_tokens=0, new_tokens=0, stop_reason="stop", seconds=0.0)

    scores = run_task(get_task("run-fim", data=str(tmp_path / "tasks.jsonl")), Baseline(), tmp_path / "out",
                      workers=1)
    assert scores["fim_summary"]["total"]["bpb"] is None and scores["fim_summary"]["total"]["em"] == 100.0
    assert scores["eval_config"]["generation"]["mode"] == "spm"
    assert scores["eval_config"]["generation"]["max_new_tokens"] == 128
