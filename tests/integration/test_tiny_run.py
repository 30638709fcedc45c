"""End to end on a tiny corpus: every stage through the CLI, resume, completion, HF loading, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lightcoder.cli import main

STDLIB = Path(os.__file__).parent
REPOS = ["json", "html", "urllib", "logging", "concurrent", "wsgiref", "xmlrpc", "dbm", "http",
         "importlib", "email", "sqlite3", "ctypes", "curses", "unittest", "asyncio"]
TINY = ["--model-preset", "lc-tiny", "--tokenizer.vocab_size", "600", "--pack.seq_len", "128",
        "--train.batch_size", "4", "--train.eval_every", "10", "--train.ckpt_every", "10",
        "--train.warmup_steps", "2", "--train.log_every", "5", "--train.dtype", "fp32",
        "--eval.per_type", "2", "--eval.max_new_tokens", "8", "--data.test_fraction", "0.2",
        "--data.valid_fraction", "0.1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name in REPOS:
        shutil.copytree(STDLIB / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "test*"))
    (root / "binary_blob.py").write_bytes(b"\x00\x01\x02 not text")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("run") / "quick"
    code = main(["quickstart", "--out", str(out), "--corpus", str(corpus), "--train.max_steps", "20", *TINY])
    assert code == 0
    return out


def test_quickstart_writes_every_stage(run_dir):
    for stage in ("data", "tokenizer", "shards"):
        assert (run_dir / stage / "DONE").exists(), stage
    assert (run_dir / "ckpt" / "step_000000" / "model.safetensors").exists()
    assert (run_dir / "loss.png").stat().st_size > 0
    stats = json.loads((run_dir / "data" / "stats.json").read_text())
    assert json.dumps(stats).count("binary") >= 1  # the binary file was dropped with its reason
    report = (run_dir / "report.md").read_text()
    for section in ("Data funnel", "Training", "Evaluation", "Sample completions", "Trained model vs untrained"):
        assert section in report
    assert ("Decoding: greedy, SPM prompts, 8 new tokens, frequency penalty 1, n-gram cache 0.3 (trained, "
            "untrained); none, a fixed answer (most_common_line).") in report  # the same for both models
    scores = {name: json.loads((run_dir / "eval" / name / "scores.json").read_text())
              for name in ("trained", "untrained", "most_common_line")}
    n_tasks = len((run_dir / "eval" / "tasks.jsonl").read_text().splitlines())
    for s in scores.values():  # every model scored on every task through the one harness (eval/runner.py)
        assert s["task"] == "run-fim" and s["summary"]["total"]["n"] == n_tasks > 0
    assert scores["trained"]["summary"]["total"]["bpb"] > 0  # models price the reference; the baseline cannot
    assert scores["most_common_line"]["summary"]["total"]["bpb"] is None


def test_rerun_resumes_training_and_the_curve_continues(run_dir, corpus):
    code = main(["quickstart", "--out", str(run_dir), "--corpus", str(corpus), "--train.max_steps", "30", *TINY])
    assert code == 0
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r and "val_loss" not in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), "curve has duplicates or goes back"
    assert steps[-1] == 30


def test_a_plain_rerun_of_a_finished_run_does_not_train_again(run_dir, corpus, capsys):
    """No budget given: the quickstart would compute one from this call's clock; a finished training stays
    finished (the evaluation and report are what a rerun redoes when they failed)."""
    from lightcoder.train.checkpoint import complete_checkpoints

    before = [step for step, _ in complete_checkpoints(run_dir / "ckpt")]
    capsys.readouterr()
    assert main(["quickstart", "--out", str(run_dir), "--corpus", str(corpus), *TINY]) == 0
    assert "train: finished earlier (train_summary.json); skipped" in capsys.readouterr().err
    assert [step for step, _ in complete_checkpoints(run_dir / "ckpt")] == before


def test_changed_config_of_a_finished_stage_is_refused(run_dir, corpus, capsys):
    config_before = (run_dir / "config.json").read_text()
    code = main(["pack", "--out", str(run_dir), "--pack.seq_len", "64"])
    assert code == 2
    assert "different config" in capsys.readouterr().err
    assert (run_dir / "config.json").read_text() == config_before  # a refused command changes nothing


def test_rebuilt_upstream_stage_makes_downstream_stages_refuse(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(run_dir / name, copy / name)
    for name in ("config.json", "stages.json"):
        shutil.copy(run_dir / name, copy / name)
    assert main(["tokenizer", "--out", str(copy)]) == 0  # unchanged inputs: skipped, accepted
    assert main(["data", "--out", str(copy), "--force"]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "--out", str(copy)]) == 2
    assert "earlier data stage" in capsys.readouterr().err
    assert main(["tokenizer", "--out", str(copy), "--force"]) == 0
    assert main(["pack", "--out", str(copy)]) == 2
    assert "lightcoder pack --force" in capsys.readouterr().err


def test_a_run_made_before_a_config_key_existed_still_resumes(run_dir, tmp_path, capsys):
    """Records and config.json written before tokenizer.glue_newlines existed: its default (the old split)
    fills in, so the stages are accepted; a record that differs from it is still refused."""
    copy = tmp_path / "old"
    copy.mkdir()
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(run_dir / name, copy / name)
    stages = json.loads((run_dir / "stages.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    del stages["tokenizer"]["config"]["tokenizer"]["glue_newlines"]
    del config["tokenizer"]["glue_newlines"]
    (copy / "stages.json").write_text(json.dumps(stages))
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["tokenizer", "--out", str(copy)]) == 0
    assert main(["pack", "--out", str(copy)]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "--out", str(copy), "--tokenizer.glue_newlines", "false"]) == 2
    assert "glue_newlines" in capsys.readouterr().err


def test_complete_cli(run_dir, tmp_path, capsys):
    prefix = tmp_path / "a.py"
    prefix.write_text("import json\n\ndef load(path):\n    with open(path) as f:\n        return ")
    suffix = tmp_path / "b.py"
    suffix.write_text("\n\nprint(load('x'))\n")
    assert main(["complete", str(run_dir), "--prefix-file", str(prefix), "--suffix-file", str(suffix),
                 "--max-tokens", "8"]) == 0
    out = capsys.readouterr()
    assert "tokens in" in out.err and "frequency penalty 1, cache weight 0.3" in out.err  # the run's eval decoding
    from lightcoder.infer.completer import Completer

    served = Completer.load(run_dir).complete(prefix.read_text(), suffix.read_text(), path="a.py", max_new_tokens=8,
                                              frequency_penalty=1.0, cache_weight=0.3).text
    assert out.out == served + ("" if served.endswith("\n") else "\n")
    assert main(["complete", str(run_dir), "--prefix-file", str(prefix), "--suffix-file", str(suffix),
                 "--max-tokens", "8", "--frequency-penalty", "0", "--cache-weight", "0"]) == 0
    assert "frequency penalty 0, cache weight 0; float32 weights]" in capsys.readouterr().err  # fp32 as stored
    assert main(["complete", str(run_dir), "--prefix-file", str(prefix), "--mode", "psm"]) == 0


def test_checkpoint_loads_in_transformers_with_its_tokenizer(run_dir):
    transformers = pytest.importorskip("transformers")
    import torch

    from lightcoder.model.hf import load_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(run_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(ckpt)
    assert type(hf).__name__ == "LlamaForCausalLM"
    tok = transformers.AutoTokenizer.from_pretrained(ckpt)
    ids = tok("def f(x):\n    return x\n")["input_ids"]
    ours, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        a = hf(torch.tensor([ids])).logits
        b = ours(torch.tensor([ids]))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["data", "--out", str(tmp_path / "r1"), "--corpus", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no code here")
    assert main(["data", "--out", str(tmp_path / "r2"), "--corpus", str(empty)]) == 1
    assert "no usable source files" in capsys.readouterr().err
    broken = tmp_path / "broken" / "pkg"
    broken.mkdir(parents=True)
    (broken / "a.py").write_text("def f(:\n    return\n")
    (broken / "b.py").write_text("class (x):\n")
    assert main(["data", "--out", str(tmp_path / "r4"), "--corpus", str(broken.parent)]) == 1
    err = capsys.readouterr().err
    assert "no usable source files" in err and "syntax_error" in err
    assert main(["config", "--out", str(tmp_path / "r3"), "--train.learning_rate", "1"]) == 2
    assert "unknown config key --train.learning_rate" in capsys.readouterr().err


def test_corrupt_checkpoint_gives_a_clear_error(run_dir, tmp_path, capsys):
    from lightcoder.model.hf import resolve_checkpoint

    bad_ckpt = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint(run_dir), bad_ckpt)
    weights = bad_ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a torn write
    prefix = tmp_path / "p.py"
    prefix.write_text("x = ")
    assert main(["complete", str(bad_ckpt), "--prefix-file", str(prefix)]) == 1
    err = capsys.readouterr().err
    assert str(bad_ckpt) in err and ("corrupt" in err or "incomplete" in err)
    assert main(["complete", str(tmp_path / "nowhere"), "--prefix-file", str(prefix)]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_module_entry_point_prints_help():
    out = subprocess.run([sys.executable, "-m", "lightcoder", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("quickstart", "data", "tokenizer", "pack", "train", "eval", "complete"):
        assert command in out.stdout
