"""`lightcoder finetune demo` end to end on a tiny "quickstart run", `--prepare-only`, and the refusals of
a torchrun launch that cannot work."""

import json
from pathlib import Path

import pytest

from lightcoder.cli import main
from lightcoder.config import ConfigError
from lightcoder.finetune.command import check_launch
from lightcoder.finetune.config import FinetuneConfig
from lightcoder.finetune.command import build_parser as finetune_parser
from lightcoder.finetune.command import resolve_config
from lightcoder.finetune.demo import DEFAULT_REPLAY, build_parser, demo_argv, package_dir, verdict
from lightcoder.finetune.report import relative_change_ci

TINY = ["--pack.seq_len", "128", "--train.batch_size", "2", "--train.log_every", "1", "--train.max_steps", "2",
        "--train.dtype", "fp32", "--train.tensorboard", "false", "--eval.per_type", "1",
        "--eval.max_new_tokens", "8", "--split.heldout_fraction", "0.25", "--data.workers", "1"]
TASK = {"task_type": "single_line", "path": "colorsys.py", "language": "Python", "prefix": "def f(x):\n    ",
        "middle": "return x + 1", "suffix": "\n"}


@pytest.fixture
def quickstart_run(tmp_path, bpe_base) -> Path:
    """A run dir laid out as `lightcoder quickstart` leaves it: ckpt/step_N and eval/tasks.jsonl."""
    run = tmp_path / "quickstart"
    (run / "ckpt").mkdir(parents=True)
    (run / "ckpt" / "step_000007").symlink_to(bpe_base, target_is_directory=True)
    (run / "eval").mkdir()
    rows = [{**TASK, "task_id": "single_line/0000"}, {**TASK, "task_id": "single_line/0001"},
            {**TASK, "task_type": "he_single_line", "task_id": "he/0"}]
    (run / "eval" / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_demo_reports_before_after_on_the_package_and_the_stdlib_tasks(quickstart_run, package, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["finetune", "demo", "--base", str(quickstart_run), "--package", str(package), "--out", str(out),
                 "--minutes", "2", "--reserve", "1.5", "--general-per-type", "1", *TINY]) == 0
    general = [json.loads(line) for line in (out / "general_tasks.jsonl").read_text().splitlines()]
    assert [t["task_id"] for t in general] == ["single_line/0000"]  # 1 per type; the HumanEval rows left out
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["general"]["n"] == 1 and results["heldout"]["n"] >= 1
    record = json.loads((out / "finetune.json").read_text())
    assert record["config"]["train"]["max_minutes"] == 0.5
    printed = capsys.readouterr().out
    assert "adapted package, held-out files: ES" in printed and "forgetting" in printed and "demo wall time" in printed


def test_the_users_overrides_win_over_the_demos_flags(tmp_path):
    args = build_parser().parse_args(["--out", str(tmp_path / "demo")])
    ft_args, ft_rest = finetune_parser().parse_known_args(demo_argv(args, tmp_path, tmp_path, "none", 8.5))
    cfg = resolve_config(ft_args, ft_rest + ["--train.max_minutes", "2", "--train.lr", "1e-3"])
    assert cfg.method == "full"  # the demo's default method on the tiny quickstart base
    assert (cfg.train.max_minutes, cfg.train.lr) == (2.0, 1e-3)
    assert resolve_config(ft_args, ft_rest).train.max_minutes == 8.5


def test_replay_points_at_the_base_runs_corpus(tmp_path):
    run = tmp_path / "quickstart"
    ckpt = run / "ckpt" / "step_000007"
    ckpt.mkdir(parents=True)
    args = build_parser().parse_args(["--base", str(run), "--replay", "0.5", "--out", str(tmp_path / "demo")])
    with pytest.raises(ConfigError, match="--replay 0.5: no curated corpus"):
        demo_argv(args, ckpt, tmp_path, "none", 8.5)
    (run / "data").mkdir()
    (run / "data" / "DONE").write_text("{}")
    ft_args, ft_rest = finetune_parser().parse_known_args(demo_argv(args, ckpt, tmp_path, "none", 8.5))
    split = resolve_config(ft_args, ft_rest).split
    assert (split.replay, split.replay_fraction) == (str(run / "data"), 0.5)
    default = build_parser().parse_args(["--base", str(run)])  # the base run has its data/: replay is on
    assert demo_argv(default, ckpt, tmp_path, "none", 8.5)[-1] == f"{DEFAULT_REPLAY:g}"
    off = build_parser().parse_args(["--base", str(run), "--replay", "0"])
    assert "--split.replay" not in demo_argv(off, ckpt, tmp_path, "none", 8.5)
    (run / "data" / "DONE").unlink()  # no corpus to replay: off by default, not an error
    assert "--split.replay" not in demo_argv(default, ckpt, tmp_path, "none", 8.5)


def test_demo_names_a_missing_base_and_package(tmp_path):
    assert main(["finetune", "demo", "--base", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    with pytest.raises(ConfigError, match="pick one from site-packages"):
        package_dir("no_such_package_xyz")
    assert package_dir("json") == Path(json.__file__).parent.resolve()


def test_verdict_compares_relative_edit_similarity_with_the_targets():
    def row(base_es, tuned_es):
        return {"n": 5, "base": {"total": {"es": base_es}}, "tuned": {"total": {"es": tuned_es}}}

    lines = verdict({"heldout": row(20.0, 27.0), "general": row(50.0, 48.0)})
    assert "ES +35.0 % (target >= +30 %: met)" in lines[0]
    assert "ES -4.0 % (target >= -5 %: met)" in lines[1]
    assert "NOT met" in verdict({"heldout": row(20.0, 22.0)})[0]
    with_ci = verdict({"heldout": {**row(20.0, 27.0), "es_change_ci": [-5.25, 80.0]}})
    assert "ES +35.0 % [-5.2, +80.0] (target >= +30 %: met)" in with_ci[0]


def test_relative_change_interval_is_paired_by_task():
    import random

    assert relative_change_ci({"a": 10.0, "b": 20.0}, {"a": 12.0, "b": 24.0}) == (pytest.approx(20.0),
                                                                                   pytest.approx(20.0))
    assert relative_change_ci({"a": 10.0}, {"a": 12.0}) is None  # one task: no interval
    rng = random.Random(3)
    base = {f"t{i}": rng.uniform(0, 40) for i in range(80)}
    tuned = {k: v * 1.2 + rng.uniform(-10, 10) for k, v in base.items()}
    low, high = relative_change_ci(base, tuned)
    point = 100 * (sum(tuned.values()) / sum(base.values()) - 1)
    assert low < point < high and high - low > 5  # noisy per-task changes: a real interval around the point
    wide_low, wide_high = relative_change_ci(dict(list(base.items())[:10]), dict(list(tuned.items())[:10]))
    assert wide_high - wide_low > high - low  # fewer tasks, wider interval


def test_prepare_only_stops_after_packing(tmp_path, bpe_base, package):
    out = tmp_path / "prep"
    assert main(["finetune", "--base", str(bpe_base), "--corpus", str(package), "--out", str(out), "--method", "full",
                 "--prepare-only", *TINY]) == 0
    assert (out / "shards" / "DONE").exists() and not (out / "ckpt").exists() and not (out / "report.md").exists()


def test_a_torchrun_launch_needs_full_and_prepared_data(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="without torchrun"):
        check_launch(FinetuneConfig(method="lora"), tmp_path, force=False, prepare_only=False)
    with pytest.raises(ConfigError, match="--prepare-only"):
        check_launch(FinetuneConfig(method="full"), tmp_path, force=False, prepare_only=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert check_launch(FinetuneConfig(method="lora"), tmp_path, force=False, prepare_only=False) == 1


@pytest.mark.slow
def test_full_finetune_under_torchrun_fsdp(tmp_path, aix_base, package):
    """--prepare-only in one process, then torchrun with 2 ranks (gloo, FSDP2): every rank starts from the
    base's weights, rank 0 writes the checkpoints and the report."""
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    out = tmp_path / "full"
    assert main(["finetune", "--base", str(aix_base), "--corpus", str(package), "--out", str(out), "--method", "full",
                 "--prepare-only", *TINY]) == 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
              "lightcoder", "finetune", "--out", str(out), "--train.parallel", "fsdp", "--eval.enabled", "false"]
    proc = subprocess.run(launch, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = load_file(aix_base / "model.safetensors")
    step0 = load_file(out / "ckpt" / "step_000000" / "model.safetensors")
    final = load_file(out / "ckpt" / "step_000002" / "model.safetensors")
    assert all(torch.equal(step0[k], base[k]) for k in base)
    assert any(not torch.equal(final[k], base[k]) for k in base)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["parallel"] == "fsdp" and (out / "report.md").is_file()


def test_the_demo_scores_with_the_decoding_its_base_was_measured_with(tmp_path):
    run = tmp_path / "quickstart"
    ckpt = run / "ckpt" / "step_000007"
    ckpt.mkdir(parents=True)
    args = build_parser().parse_args(["--base", str(run), "--replay", "0", "--out", str(tmp_path / "demo")])
    cfg = resolve_config(*finetune_parser().parse_known_args(demo_argv(args, ckpt, tmp_path, "none", 8.5)))
    assert cfg.eval.frequency_penalty == 0.0 and cfg.eval.cache_weight == 0.0  # no run config: plain greedy
    (run / "config.json").write_text(json.dumps({"eval": {"frequency_penalty": 1.0}}))  # before the cache
    cfg = resolve_config(*finetune_parser().parse_known_args(demo_argv(args, ckpt, tmp_path, "none", 8.5)))
    assert cfg.eval.frequency_penalty == 1.0 and cfg.eval.cache_weight == 0.0
    (run / "config.json").write_text(json.dumps({"eval": {"frequency_penalty": 1.0, "cache_weight": 0.3}}))
    cfg = resolve_config(*finetune_parser().parse_known_args(demo_argv(args, ckpt, tmp_path, "none", 8.5)))
    assert cfg.eval.cache_weight == 0.3
    ft_args, ft_rest = finetune_parser().parse_known_args(demo_argv(args, ckpt, tmp_path, "none", 8.5))
    assert resolve_config(ft_args, ft_rest + ["--eval.frequency_penalty", "0"]).eval.frequency_penalty == 0.0
    with pytest.raises((ConfigError, ValueError), match="frequency_penalty"):
        resolve_config(ft_args, ft_rest + ["--eval.frequency_penalty", "3"])
    with pytest.raises((ConfigError, ValueError), match="cache_weight must be a number in"):
        resolve_config(ft_args, ft_rest + ["--eval.cache_weight", "1.5"])
