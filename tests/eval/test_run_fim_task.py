"""The run's FIM tasks (`run-fim`) through the one eval harness, eval/runner.py: the eval stage's and
`lightcoder finetune`'s numbers, files, resume rules and report tables."""

import dataclasses
import json

import pytest

from lightcoder.eval.baselines import OraclePredictor
from lightcoder.eval.builders import FimTask, write_tasks
from lightcoder.eval.config import EvalConfig
from lightcoder.eval.metrics import TOTAL
from lightcoder.eval.report import (
    CURSOR_CLOSE, CURSOR_OPEN, format_behaviour_table, format_eval_table, format_samples,
)
from lightcoder.eval.runner import GenerationSettings, read_rows, read_samples, run_task
from lightcoder.eval.tasks import get_task
from lightcoder.infer.completer import Completion


def make_tasks() -> list[FimTask]:
    tasks = [FimTask(task_id=f"single_line/{i}", task_type="single_line", path=f"pkg/m{i}.py", language="Python",
                     prefix=f"def f{i}():\n    ", middle=f"return {i}\n", suffix="\n\nx = 1\n") for i in range(4)]
    tasks += [FimTask(task_id=f"if_statement/{i}", task_type="if_statement", path="pkg/n.py", language="Python",
                      prefix=f"x = {i}\n", middle="if x:\n    y = 2\n", suffix="print(x)\n") for i in range(2)]
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


class BitsPredictor(FakePredictor):
    """Also prices the reference middle (1 bit per character) and runs to the token limit on the
    if_statement tasks (path pkg/n.py)."""

    def complete(self, prefix, suffix="", **kwargs):
        done = super().complete(prefix, suffix, **kwargs)
        return dataclasses.replace(done, stop_reason="length") if kwargs.get("path") == "pkg/n.py" else done

    def middle_bits(self, prefix, middle, suffix="", *, path="", mode="spm", max_new_tokens=64, fim=None):
        return float(len(middle))


def evaluate(predictor, tasks, out, *, model_id="m", max_new_tokens=128, mode="spm", **kwargs) -> dict:
    """What stages.stage_eval does for one model: the tasks file, the run-fim task, the runner."""
    data = out.parent / f"{out.name}.tasks.jsonl"
    write_tasks(tasks, data)
    task = get_task("run-fim", data=str(data), max_new_tokens=max_new_tokens, mode=mode)
    return run_task(task, predictor, out, GenerationSettings(model_id=model_id), **kwargs)


def test_eval_config_validates():
    assert EvalConfig().mode == "spm"  # aiXcoder's own inference order
    with pytest.raises(ValueError, match="eval.mode"):
        EvalConfig(mode="fim")
    with pytest.raises(ValueError, match="eval.per_type"):
        EvalConfig(per_type=0)
    with pytest.raises(ValueError, match="eval.max_prompt_tokens"):
        EvalConfig(max_prompt_tokens=-1)
    with pytest.raises(ValueError, match="run-fim: mode"):
        get_task("run-fim", data="tasks.jsonl", mode="fim")
    with pytest.raises(ValueError, match="eval.frequency_penalty"):
        EvalConfig(frequency_penalty=2.5)
    with pytest.raises(ValueError, match="presence_penalty"):
        GenerationSettings(presence_penalty=-3.0)


def test_penalties_and_infilling_reach_predictors_that_take_them_and_change_the_config_hash(tmp_path):
    """The eval decodes as the server does by default: eval.frequency_penalty goes to Completer.complete,
    and run-fim's tasks are infilling requests (fim=True)."""
    tasks = make_tasks()

    class Penalized(FakePredictor):
        def complete(self, prefix, suffix="", *, frequency_penalty=0.0, presence_penalty=0.0, fim=None, **kwargs):
            done = super().complete(prefix, suffix, **kwargs)
            self.calls[-1].update(frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, fim=fim)
            return done

    predictor = Penalized(tasks)
    data = tmp_path / "tasks.jsonl"
    write_tasks(tasks, data)
    task = get_task("run-fim", data=str(data))
    plain = run_task(task, predictor, tmp_path / "plain", GenerationSettings(model_id="m"))
    assert {c["frequency_penalty"] for c in predictor.calls} == {0.0}
    assert {c["fim"] for c in predictor.calls} == {True}  # holes: FIM prompts even at the end of a file
    predictor.calls.clear()
    gen = GenerationSettings(model_id="m", frequency_penalty=0.5, presence_penalty=0.25)
    penalized = run_task(task, predictor, tmp_path / "penalized", gen)
    assert len(predictor.calls) == len(tasks)
    assert all(c["frequency_penalty"] == 0.5 and c["presence_penalty"] == 0.25 for c in predictor.calls)
    assert penalized["eval_config"]["generation"]["frequency_penalty"] == 0.5
    assert penalized["config_hash"] != plain["config_hash"]


def test_oracle_scores_100_and_files_are_written(tmp_path):
    tasks = make_tasks()
    scores = evaluate(OraclePredictor(tasks), tasks, tmp_path / "oracle")
    assert scores["summary"][TOTAL]["em"] == 100.0 and scores["summary"][TOTAL]["es"] == 100.0
    assert scores["task"] == "run-fim" and scores["eval_config"]["generation"]["mode"] == "spm"
    assert json.loads((tmp_path / "oracle" / "scores.json").read_text()) == scores
    samples = read_samples(tmp_path / "oracle")
    assert sorted(s["task_id"] for s in samples) == sorted(t.task_id for t in tasks)
    assert set(samples[0]) >= {"task_id", "task_type", "completion", "raw", "new_tokens", "seconds", "bits"}
    header, results = read_rows(tmp_path / "oracle" / "results.jsonl")
    assert header["config_hash"] == scores["config_hash"]
    assert len(results) == len(tasks) and all(r["em"] for r in results)


def test_fake_predictor_scores_and_call_arguments(tmp_path):
    tasks = make_tasks()
    predictor = FakePredictor(tasks)
    scores = evaluate(predictor, tasks, tmp_path / "fake", max_new_tokens=7, mode="psm")
    summary = scores["summary"]
    assert list(summary) == ["single_line", "if_statement", TOTAL]  # the tasks file's order
    assert summary["single_line"]["em"] == 50.0 and summary["if_statement"]["em"] == 0.0
    assert summary[TOTAL]["n"] == 6 and summary[TOTAL]["em"] == pytest.approx(100 * 2 / 6)
    assert summary["if_statement"]["pred_len"] == 4.0  # "pass"
    assert [c["path"] for c in predictor.calls] == [t.path for t in tasks]
    assert all(c["max_new_tokens"] == 7 and c["mode"] == "psm" for c in predictor.calls)
    assert scores["timing"]["new_tokens"] == 18


def test_interrupted_run_resumes_without_redoing_tasks(tmp_path):
    tasks = make_tasks()
    with pytest.raises(KeyboardInterrupt):
        evaluate(FakePredictor(tasks, fail_after=2), tasks, tmp_path / "run")
    assert len(read_samples(tmp_path / "run")) == 2
    assert not (tmp_path / "run" / "scores.json").exists()

    predictor = FakePredictor(tasks)
    resumed = evaluate(predictor, tasks, tmp_path / "run")
    assert len(predictor.calls) == 4  # only the tasks the crash left undone
    fresh = evaluate(FakePredictor(tasks), tasks, tmp_path / "fresh")
    assert resumed["summary"] == fresh["summary"]

    again = FakePredictor(tasks)
    evaluate(again, tasks, tmp_path / "run")  # a finished run rescores without model calls
    assert again.calls == []


def test_truncated_last_line_is_dropped_and_regenerated(tmp_path):
    tasks = make_tasks()
    with pytest.raises(KeyboardInterrupt):
        evaluate(FakePredictor(tasks, fail_after=3), tasks, tmp_path / "run")
    samples_path = tmp_path / "run" / "samples.jsonl"
    with samples_path.open("a") as f:
        f.write('{"task_id": "single_line/3", "task_typ')  # killed mid-write
    assert len(read_samples(tmp_path / "run")) == 3
    assert samples_path.read_text().endswith("}\n")  # the partial line was cut off the file

    predictor = FakePredictor(tasks)
    evaluate(predictor, tasks, tmp_path / "run")
    assert [c["path"] for c in predictor.calls] == [t.path for t in tasks[3:]]
    assert len(read_samples(tmp_path / "run")) == len(tasks)


def test_resume_refuses_other_settings_unless_forced_or_stale(tmp_path):
    tasks = make_tasks()
    out = tmp_path / "run"
    evaluate(OraclePredictor(tasks), tasks, out, max_new_tokens=8)
    with pytest.raises(ValueError, match="force=True"):
        evaluate(OraclePredictor(tasks), tasks, out, max_new_tokens=9)
    with pytest.raises(ValueError, match="force=True"):
        evaluate(OraclePredictor(tasks), tasks, out, max_new_tokens=8, model_id="step_2")
    same = FakePredictor(tasks)
    evaluate(same, tasks, out, max_new_tokens=8, restart_stale=True)
    assert same.calls == []  # nothing changed: every sample is reused
    newer = FakePredictor(tasks)
    scores = evaluate(newer, tasks, out, max_new_tokens=8, model_id="step_2", restart_stale=True)
    assert len(newer.calls) == len(tasks)  # another checkpoint: all samples redone
    assert scores["summary"][TOTAL]["em"] < 100  # scored from the new samples, not the oracle's
    forced = FakePredictor(tasks)
    evaluate(forced, tasks, out, max_new_tokens=9, force=True)
    assert len(forced.calls) == len(tasks)


def test_a_changed_task_file_is_another_config(tmp_path):
    """Tasks rebuilt at the same path (fewer of them, or other references under the same ids) never have
    their old samples scored against them: the problems' digest is part of the config."""
    tasks = make_tasks()
    evaluate(OraclePredictor(tasks), tasks, tmp_path / "run")
    with pytest.raises(ValueError, match="another eval config"):
        evaluate(OraclePredictor(tasks), tasks[:2], tmp_path / "run")
    changed = [dataclasses.replace(tasks[0], middle=tasks[0].middle + "# changed\n"), *tasks[1:]]
    with pytest.raises(ValueError, match="another eval config"):
        evaluate(OraclePredictor(changed), changed, tmp_path / "run")


def test_duplicate_task_ids_are_refused(tmp_path):
    tasks = make_tasks()
    with pytest.raises(ValueError, match="task ids must be unique"):
        evaluate(OraclePredictor(tasks), tasks + tasks[:1], tmp_path / "run")


def test_results_record_stop_syntax_and_bits_per_byte(tmp_path):
    tasks = make_tasks()
    scores = evaluate(BitsPredictor(tasks), tasks, tmp_path / "bits")
    rows = {r["task_id"]: r for r in read_rows(tmp_path / "bits" / "results.jsonl")[1]}
    assert rows["single_line/0"]["syntax_ok"] is True and rows["single_line/0"]["stopped"] is True
    assert rows["if_statement/0"]["stopped"] is False and rows["if_statement/0"]["bits"] == len(tasks[4].middle)
    summary = scores["summary"]
    assert summary["single_line"]["stop_rate"] == 100.0 and summary["if_statement"]["stop_rate"] == 0.0
    assert summary[TOTAL]["bpb"] == pytest.approx(1.0)  # 1 bit per (ASCII) character
    table = format_behaviour_table({"bits": scores})
    assert "| single_line | 4 | 100 / " in table and "/ 1.00 |" in table and "stop token" in table


def test_syntax_and_grammarless_rows(tmp_path):
    """Right on one single line, an unparsable answer on another; no grammar: syntax None."""
    tasks = [FimTask(f"single_line/{i}", "single_line", f"pkg/m{i}.py", "Python", f"def f{i}():\n    ",
                     f"return {i}", "\n") for i in range(2)]
    tasks.append(FimTask("random_span/0", "random_span", "a.xyz", "NoGrammar", "a", "bc", "d"))

    class Model:
        def complete(self, prefix, suffix="", *, path="", max_new_tokens=64, mode="spm", temperature=0.0):
            text = {"pkg/m0.py": "return 0", "pkg/m1.py": "return ("}.get(path, "x")
            return Completion(text=text, prompt_tokens=5, new_tokens=2, seconds=0.0, stop_reason="stop")

    table = evaluate(Model(), tasks, tmp_path / "m")["summary"]
    assert table["single_line"]["em"] == 50.0 and table["single_line"]["syntax"] == 50.0
    assert table["random_span"]["syntax"] is None and table[TOTAL]["bpb"] is None  # no bits from this model


def test_format_eval_table(tmp_path):
    tasks = make_tasks()
    table = format_eval_table({
        "oracle": evaluate(OraclePredictor(tasks), tasks, tmp_path / "o"),
        "fake": evaluate(FakePredictor(tasks), tasks, tmp_path / "f"),
    })
    lines = table.splitlines()
    assert lines[0] == "| task type | n | oracle | fake |"
    assert lines[2].startswith("| single_line | 4 | 100.0 / 100.0 / 8:9 | 50.0 / ")
    assert lines[3].startswith("| if_statement | 2 |")
    assert lines[4].startswith(f"| **{TOTAL}** | 6 |")


def test_format_samples_shows_context_and_reference():
    tasks = make_tasks()
    tasks[0] = dataclasses.replace(tasks[0], prefix="".join(f"line{i}\n" for i in range(10)) + "    ")
    samples = [{"task_id": t.task_id, "completion": "return 0"} for t in tasks]
    text = format_samples(tasks, samples, k=3)
    assert text.count("reference:") == 3
    assert "if_statement/0" in text  # round-robin over task types
    assert f"line9\n    {CURSOR_OPEN}return 0{CURSOR_CLOSE}\n\nx = 1" in text
    assert "line4" not in text and "line5" in text  # the last 6 prefix lines, the cursor's included
    assert "exact match" in text


def test_eval_report_names_a_runs_fim_scores_by_model(tmp_path):
    """RUN/eval/<model>/scores.json (the eval stage's layout) are runs of their own in `lightcoder eval
    report`, and a run's scores from before the one harness (no "task" key) still read as run-fim."""
    from lightcoder.eval.report_command import find_runs

    tasks = make_tasks()
    evaluate(OraclePredictor(tasks), tasks, tmp_path / "eval" / "trained")
    evaluate(FakePredictor(tasks), tasks, tmp_path / "eval" / "untrained")
    old = tmp_path / "eval" / "older"
    old.mkdir()
    (old / "scores.json").write_text(json.dumps({"name": "older", "summary": {TOTAL: {"n": 6, "em": 0.0}}}))
    runs = find_runs([str(tmp_path / "eval")])
    assert set(runs) == {"eval/trained", "eval/untrained", "eval/older"}
    assert runs["eval/trained"]["run-fim"]["summary"][TOTAL]["em"] == 100.0
    assert runs["eval/older"]["run-fim"]["kind"] == "match"


def test_the_decoding_line_names_each_models_recorded_settings(tmp_path):
    """The run report says how every model was decoded, read back from what each scores.json recorded."""
    from lightcoder.eval.report import decoding_line

    tasks = make_tasks()
    data = tmp_path / "t.tasks.jsonl"
    write_tasks(tasks, data)
    task = get_task("run-fim", data=str(data), max_new_tokens=64, mode="spm")
    cached = run_task(task, OraclePredictor(tasks), tmp_path / "a",
                      GenerationSettings(model_id="a", template="aixcoder", frequency_penalty=1.0, cache_weight=0.3))
    plain = run_task(task, OraclePredictor(tasks), tmp_path / "b", GenerationSettings(model_id="b", template="aixcoder"))
    fixed = run_task(task, OraclePredictor(tasks), tmp_path / "c", GenerationSettings(model_id="c", cache_weight=0.3))
    line = decoding_line({"trained": cached, "untrained": cached, "greedy": plain, "baseline": fixed})
    assert line == ("Decoding: greedy, SPM prompts, 64 new tokens, frequency penalty 1, n-gram cache 0.3 "
                    "(trained, untrained); greedy, SPM prompts, 64 new tokens (greedy); none, a fixed answer "
                    "(baseline).")
