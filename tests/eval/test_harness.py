import dataclasses
import json

import pytest

from lightcoder.eval.baselines import OraclePredictor
from lightcoder.eval.builders import FimTask
from lightcoder.eval.config import EvalConfig
from lightcoder.eval.harness import load_samples, run_fim_eval, score_samples
from lightcoder.eval.metrics import TOTAL
from lightcoder.eval.report import (
    CURSOR_CLOSE, CURSOR_OPEN, format_behaviour_table, format_eval_table, format_samples,
)
from lightcoder.infer.completer import Completion


def make_tasks() -> list[FimTask]:
    tasks = []
    for i in range(4):
        tasks.append(FimTask(task_id=f"single_line/{i}", task_type="single_line", path=f"pkg/m{i}.py",
                             language="Python", prefix=f"def f{i}():\n    ", middle=f"return {i}\n",
                             suffix="\n\nx = 1\n"))
    for i in range(2):
        tasks.append(FimTask(task_id=f"if_statement/{i}", task_type="if_statement", path="pkg/n.py",
                             language="Python", prefix=f"x = {i}\n", middle="if x:\n    y = 2\n",
                             suffix="print(x)\n"))
    return tasks


class FakePredictor:
    """Answers the reference for single_line tasks 0 and 1, a wrong line otherwise; records calls."""

    def __init__(self, tasks, *, fail_after=None):
        self.oracle = OraclePredictor(tasks)
        self.calls = []
        self.fail_after = fail_after

    def complete(self, prefix, suffix="", *, path="", max_new_tokens=64, mode="spm", temperature=0.0):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # a crash in the middle of a run
        self.calls.append({"path": path, "max_new_tokens": max_new_tokens, "mode": mode})
        text = self.oracle.complete(prefix, suffix, path=path).text
        if path not in ("pkg/m0.py", "pkg/m1.py"):
            text = "pass"
        return Completion(text=text, prompt_tokens=10, new_tokens=3, stop_reason="stop", seconds=0.0)


def test_eval_config_validates():
    assert EvalConfig().mode == "spm"  # aiXcoder's own inference order
    with pytest.raises(ValueError, match="eval.mode"):
        EvalConfig(mode="fim")
    with pytest.raises(ValueError, match="eval.per_type"):
        EvalConfig(per_type=0)
    with pytest.raises(ValueError, match="eval.max_prompt_tokens"):
        EvalConfig(max_prompt_tokens=-1)


def test_oracle_scores_100_and_files_are_written(tmp_path):
    tasks = make_tasks()
    scores = run_fim_eval(OraclePredictor(tasks), tasks, tmp_path, name="oracle", config={"per_type": 4})
    assert scores["summary"][TOTAL]["em"] == 100.0 and scores["summary"][TOTAL]["es"] == 100.0
    assert scores["name"] == "oracle" and scores["eval_version"] >= 1 and scores["lightcoder_version"]
    assert scores["config"] == {"per_type": 4} and scores["generation"]["mode"] == "spm"
    assert json.loads((tmp_path / "scores.json").read_text()) == scores
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == [t.task_id for t in tasks]
    assert set(samples[0]) >= {"task_id", "task_type", "prediction", "new_tokens", "seconds"}
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == len(tasks) and all(r["em"] for r in results)


def test_fake_predictor_scores_and_call_arguments(tmp_path):
    tasks = make_tasks()
    predictor = FakePredictor(tasks)
    scores = run_fim_eval(predictor, tasks, tmp_path, name="fake", max_new_tokens=7, mode="psm")
    summary = scores["summary"]
    assert summary["single_line"]["em"] == 50.0 and summary["if_statement"]["em"] == 0.0
    assert summary[TOTAL]["n"] == 6 and summary[TOTAL]["em"] == pytest.approx(100 * 2 / 6)
    assert summary["if_statement"]["pred_len"] == 4.0  # "pass"
    assert [c["path"] for c in predictor.calls] == [t.path for t in tasks]
    assert all(c["max_new_tokens"] == 7 and c["mode"] == "psm" for c in predictor.calls)
    assert scores["timing"]["new_tokens"] == 18


def test_interrupted_run_resumes_without_redoing_tasks(tmp_path):
    tasks = make_tasks()
    with pytest.raises(KeyboardInterrupt):
        run_fim_eval(FakePredictor(tasks, fail_after=2), tasks, tmp_path, name="fake")
    assert len(load_samples(tmp_path / "samples.jsonl")) == 2
    assert not (tmp_path / "scores.json").exists()

    predictor = FakePredictor(tasks)
    resumed = run_fim_eval(predictor, tasks, tmp_path, name="fake")
    assert len(predictor.calls) == 4  # only the tasks the crash left undone
    fresh = run_fim_eval(FakePredictor(tasks), tasks, tmp_path / "fresh", name="fake")
    assert resumed["summary"] == fresh["summary"]

    again = FakePredictor(tasks)
    run_fim_eval(again, tasks, tmp_path, name="fake")  # a finished run rescores without model calls
    assert again.calls == []


def test_truncated_last_line_is_dropped_and_regenerated(tmp_path):
    tasks = make_tasks()
    run_fim_eval(OraclePredictor(tasks), tasks[:3], tmp_path, name="m")
    samples_path = tmp_path / "samples.jsonl"
    with samples_path.open("a") as f:
        f.write('{"task_id": "single_line/3", "task_typ')  # killed mid-write
    assert len(load_samples(samples_path)) == 3
    assert samples_path.read_text().endswith("}\n")  # the partial line was cut off the file

    predictor = FakePredictor(tasks)
    run_fim_eval(predictor, tasks, tmp_path, name="m")
    assert [c["path"] for c in predictor.calls] == [t.path for t in tasks[3:]]
    assert len(load_samples(samples_path)) == len(tasks)


def test_corrupt_middle_line_is_an_error(tmp_path):
    (tmp_path / "samples.jsonl").write_text('{"task_id": "a", "prediction": ""}\nnot json\n')
    with pytest.raises(ValueError, match="samples.jsonl:2"):
        load_samples(tmp_path / "samples.jsonl")


def test_resume_refuses_other_settings_or_tasks_unless_forced(tmp_path):
    tasks = make_tasks()
    run_fim_eval(OraclePredictor(tasks), tasks, tmp_path, name="m", max_new_tokens=8)
    with pytest.raises(ValueError, match="force=True"):
        run_fim_eval(OraclePredictor(tasks), tasks, tmp_path, name="m", max_new_tokens=9)
    with pytest.raises(ValueError, match="force=True"):
        run_fim_eval(OraclePredictor(tasks), tasks, tmp_path, name="m", max_new_tokens=8, model_id="step_2")
    with pytest.raises(ValueError, match="task ids not in the tasks"):
        run_fim_eval(OraclePredictor(tasks), tasks[:2], tmp_path, name="m", max_new_tokens=8)
    predictor = FakePredictor(tasks)
    run_fim_eval(predictor, tasks, tmp_path, name="m", max_new_tokens=9, force=True)
    assert len(predictor.calls) == len(tasks)


def test_score_samples_needs_one_sample_per_task():
    tasks = make_tasks()
    samples = [{"task_id": t.task_id, "prediction": t.middle} for t in tasks]
    assert all(r["em"] for r in score_samples(tasks, samples))
    with pytest.raises(ValueError, match="1 task"):
        score_samples(tasks, samples[1:])
    with pytest.raises(ValueError, match="unknown task ids"):
        score_samples(tasks[1:], samples)


def test_format_eval_table(tmp_path):
    tasks = make_tasks()
    table = format_eval_table({
        "oracle": run_fim_eval(OraclePredictor(tasks), tasks, tmp_path / "o", name="oracle"),
        "fake": run_fim_eval(FakePredictor(tasks), tasks, tmp_path / "f", name="fake"),
    })
    lines = table.splitlines()
    assert lines[0] == "| task type | n | oracle | fake |"
    assert lines[2].startswith("| single_line | 4 | 100.0 / 100.0 / 8:9 | 50.0 / ")
    assert lines[3].startswith("| if_statement | 2 |")
    assert lines[4].startswith(f"| **{TOTAL}** | 6 |")


class BitsPredictor(FakePredictor):
    """FakePredictor that also prices the reference middle (1 bit per character) and runs to the
    token limit on the if_statement tasks (path pkg/n.py)."""

    def complete(self, prefix, suffix="", **kwargs):
        done = super().complete(prefix, suffix, **kwargs)
        return dataclasses.replace(done, stop_reason="length") if kwargs.get("path") == "pkg/n.py" else done

    def middle_bits(self, prefix, middle, suffix="", *, path="", mode="spm", max_new_tokens=64):
        return float(len(middle))


def test_results_record_stop_syntax_and_bits_per_byte(tmp_path):
    tasks = make_tasks()
    scores = run_fim_eval(BitsPredictor(tasks), tasks, tmp_path, name="bits")
    rows = {r["task_id"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert rows["single_line/0"]["syntax_ok"] is True and rows["single_line/0"]["stopped"] is True
    assert rows["if_statement/0"]["stopped"] is False and rows["if_statement/0"]["bits"] == len(tasks[4].middle)
    summary = scores["summary"]
    assert summary["single_line"]["stop_rate"] == 100.0 and summary["if_statement"]["stop_rate"] == 0.0
    assert summary[TOTAL]["bpb"] == pytest.approx(1.0)  # 1 bit per (ASCII) character
    table = format_behaviour_table({"bits": scores})
    assert "| single_line | 4 | 100 / " in table and "/ 1.00 |" in table and "stop token" in table


def test_format_samples_shows_context_and_reference():
    tasks = make_tasks()
    tasks[0] = dataclasses.replace(tasks[0], prefix="".join(f"line{i}\n" for i in range(10)) + "    ")
    samples = [{"task_id": t.task_id, "prediction": "return 0"} for t in tasks]
    text = format_samples(tasks, samples, k=3)
    assert text.count("reference:") == 3
    assert "if_statement/0" in text  # round-robin over task types
    assert f"line9\n    {CURSOR_OPEN}return 0{CURSOR_CLOSE}\n\nx = 1" in text
    assert "line4" not in text and "line5" in text  # the last 6 prefix lines, the cursor's included
    assert "exact match" in text


def test_restart_stale_regenerates_only_when_settings_changed(tmp_path):
    tasks = make_tasks()
    run_fim_eval(OraclePredictor(tasks), tasks, tmp_path, name="m", model_id="step_1")
    same = FakePredictor(tasks)
    run_fim_eval(same, tasks, tmp_path, name="m", model_id="step_1", restart_stale=True)
    assert same.calls == []  # nothing changed: every sample is reused
    newer = FakePredictor(tasks)
    scores = run_fim_eval(newer, tasks, tmp_path, name="m", model_id="step_2", restart_stale=True)
    assert len(newer.calls) == len(tasks)  # another checkpoint: all samples redone
    assert scores["summary"][TOTAL]["em"] < 100  # scored from the new samples, not the oracle's
