"""`lightcoder ablate` end to end on a tiny corpus: equal tokens per run, a table with CIs over seeds,
paired comparisons, the plot, and a rerun that resumes instead of retraining."""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import pytest

from lightcoder.ablate import ORDERINGS, build_parser, parse_variant, plan_runs
from lightcoder.cli import main

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TINY = ["--model-preset", "lc-tiny", "--tokens", "6000", "--pack.seq_len", "128", "--tokenizer.vocab_size", "600",
        "--eval.per_type", "2", "--eval.humaneval_fim_per_type", "1", "--eval.max_new_tokens", "16",
        "--data.valid_fraction", "0.2", "--data.test_fraction", "0.25", "--train.eval_every", "0"]


def test_variants_and_run_plan():
    assert parse_variant("ntp50:pack.mix.ntp_rate=0.5;train.lr=1e-3") == (
        "ntp50", {"pack.mix.ntp_rate": "0.5", "train.lr": "1e-3"})
    with pytest.raises(ValueError, match="NAME:"):
        parse_variant("ntp50")
    args, _ = build_parser().parse_known_args(["--seeds", "2", "--variants", "fim,full", "--orderings", "path"])
    runs = [(name, seed) for name, _, seed in plan_runs(args)]
    assert runs == [("fim", 0), ("fim", 1), ("full", 0), ("full", 1), ("order-path", 0)]
    args, _ = build_parser().parse_known_args([])
    assert len(plan_runs(args)) == 4 * 3 + len(ORDERINGS)  # 4 objective variants x 3 seeds + orderings
    with pytest.raises(ValueError, match="unknown name"):
        plan_runs(build_parser().parse_known_args(["--variants", "sfim-only"])[0])


def test_tiny_ablation_writes_the_table_and_resumes(tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(STDLIB / "json", src / "json", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("textwrap.py", "shlex.py", "heapq.py", "bisect.py", "glob.py"):
        shutil.copy(STDLIB / name, src / name)
    out = tmp_path / "abl"
    argv = ["ablate", "--out", str(out), "--corpus", str(src), "--seeds", "2", "--variants", "ntp,full",
            "--orderings", "none", *TINY]
    assert main(argv) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert result["tokens"] == 6000 and [(r["variant"], r["seed"]) for r in result["runs"]] == [
        ("ntp", 0), ("ntp", 1), ("full", 0), ("full", 1)]
    full = result["table"]["full"]["structured"]
    assert full["n_seeds"] == 2 and full["es"][1] is not None  # a CI over two seeds
    assert set(result["table"]) >= {"ntp", "full", "untrained", "most_common_line"}
    comparison = result["comparisons"]["full - ntp"]["structured"]["es"]
    assert comparison["n_tasks"] > 0 and comparison["lo"] <= comparison["diff"] <= comparison["hi"]
    assert "## structured" in (out / "ablation.md").read_text() and (out / "ablation.png").stat().st_size > 0
    tokens = {json.loads((out / "runs" / r / "train_summary.json").read_text())["tokens"]
              for r in ("ntp-s0", "ntp-s1", "full-s0", "full-s1")}
    assert len(tokens) == 1 and tokens.pop() >= 6000  # equal compute
    metrics = (out / "runs" / "full-s1" / "metrics.jsonl").read_text()
    checkpoints = sorted(p.name for p in (out / "runs" / "full-s1" / "ckpt").iterdir())
    assert main(argv) == 0  # finished stages are skipped: no step is trained again
    assert (out / "runs" / "full-s1" / "metrics.jsonl").read_text() == metrics
    assert sorted(p.name for p in (out / "runs" / "full-s1" / "ckpt").iterdir()) == checkpoints
    assert json.loads((out / "ablation.json").read_text())["runs"] == result["runs"]
    # a later invocation with an extra variant adds its rows to the same table
    extra = ["ablate", "--out", str(out), "--corpus", str(src), "--seeds", "1", "--variants", "none",
             "--orderings", "none", "--variant", "ntp50:pack.mix.ntp_rate=0.5", *TINY]
    assert main(extra) == 0
    runs = [(r["variant"], r["seed"]) for r in json.loads((out / "ablation.json").read_text())["runs"]]
    assert runs[0] == ("ntp50", 0) and set(runs) == {("ntp50", 0), ("ntp", 0), ("ntp", 1), ("full", 0), ("full", 1)}
    # --rescore trains nothing and scores every run again under another decoding
    assert main(["ablate", "--out", str(out), "--rescore", "--eval.frequency_penalty", "1"]) == 0
    assert (out / "runs" / "full-s1" / "metrics.jsonl").read_text() == metrics
    rescored = json.loads((out / "ablation.json").read_text())
    assert rescored["tokens"] == 6000 and {(r["variant"], r["seed"]) for r in rescored["runs"]} == set(runs)
    for run in ("ntp-s0", "ntp-s1", "full-s0", "full-s1", "ntp50-s0"):
        samples = out / "runs" / run / "eval" / "trained" / "samples.jsonl"
        header = json.loads(samples.read_text().splitlines()[0])["eval_config"]["generation"]
        assert header["frequency_penalty"] == 1.0, run
    capsys.readouterr()
    assert main(["ablate", "--out", str(out), "--rescore", "--train.lr", "1e-3"]) == 1
    assert "--rescore changes only eval.* settings" in capsys.readouterr().err
