"""`lightcoder finetune` end to end on tiny bases made here: curation -> split -> pack -> LoRA or full
training -> before/after eval -> report; resume; refusals; then serve the run and ask it through the
`openai` client, and export merged weights equal to base + adapter."""

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from lightcoder.cli import main

TINY = ["--pack.seq_len", "128", "--train.batch_size", "2", "--train.log_every", "2", "--train.eval_every", "3",
        "--train.ckpt_every", "3", "--train.dtype", "fp32", "--train.tensorboard", "false", "--eval.per_type", "1",
        "--eval.general", "none", "--eval.max_new_tokens", "8", "--split.heldout_fraction", "0.25",
        "--data.workers", "1"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, bpe_base, package) -> Path:
    out = tmp_path_factory.mktemp("ft") / "run"
    code = main(["finetune", "--base", str(bpe_base), "--corpus", str(package), "--out", str(out),
                 "--train.max_steps", "6", *TINY])
    assert code == 0
    return out


def test_lora_run_writes_every_stage_and_the_report(lora_run):
    for stage in ("data", "split", "shards"):
        assert (lora_run / stage / "DONE").exists(), stage
    split = json.loads((lora_run / "split" / "DONE").read_text())
    assert split["test"]["files"] >= 1 and split["train"]["files"] > split["test"]["files"]
    index = json.loads((lora_run / "shards" / "index.json").read_text())
    assert index["template"] == "aixcoder" and index["splits"]["train"]["num_examples"] > 0
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (lora_run / "adapter").iterdir()}
    summary = json.loads((lora_run / "train_summary.json").read_text())
    assert summary["steps"] == 6 and 0 < summary["trainable_params"] < summary["total_params"]
    results = json.loads((lora_run / "eval" / "results.json").read_text())
    assert set(results["heldout"]) >= {"base", "tuned", "n"}
    report = (lora_run / "report.md").read_text()
    assert "Before / after" in report and "| heldout |" in report and "lightcoder serve" in report
    heldout_row = next(line for line in report.splitlines() if line.startswith("| heldout |"))
    bpb = [results["heldout"][who]["total"]["bpb"] for who in ("base", "tuned")]
    assert f"| {bpb[0]:.2f} -> {bpb[1]:.2f} |" in heldout_row  # bits per byte, base -> tuned


def test_rerun_resumes_training_and_refuses_changed_stages(lora_run, capsys):
    record_path = lora_run / "finetune.json"  # as a run from before `train.optimizer` existed wrote it
    record = json.loads(record_path.read_text())
    assert record["stages"]["ckpt"].pop("train.optimizer") == "adamw"
    record_path.write_text(json.dumps(record))
    code = main(["finetune", "--out", str(lora_run), "--train.max_steps", "9"])
    assert code == 0
    assert "resuming the adapter from" in capsys.readouterr().err
    assert json.loads((lora_run / "train_summary.json").read_text())["steps"] == 9
    steps = [r["step"] for r in map(json.loads, (lora_run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == sorted(steps) and steps[-1] == 9
    assert main(["finetune", "--out", str(lora_run), "--pack.seq_len", "64"]) == 2
    assert "was built with other pack" in capsys.readouterr().err
    assert main(["finetune", "--out", str(lora_run), "--train.optimizer", "muon"]) == 2
    assert "was built with other train.optimizer" in capsys.readouterr().err


class _Server:
    def __init__(self, app):
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_serve_the_run_to_an_openai_client(lora_run):
    openai = pytest.importorskip("openai")
    from lightcoder.infer.completer import Completer
    from lightcoder.serve.app import ServerConfig, create_app

    completer = Completer.load(lora_run)  # base + adapter, merged in memory
    assert completer.template.name == "aixcoder"
    with _Server(create_app(completer, ServerConfig(model_name="ft"))) as server:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="none")
        reply = client.completions.create(model="ft", prompt="def hsv(r, g, b):\n    return ", suffix="\n",
                                          max_tokens=6, temperature=0)
    direct = completer.complete("def hsv(r, g, b):\n    return ", "\n", max_new_tokens=6)
    assert reply.choices[0].text == direct.text and reply.usage.completion_tokens >= 1


def test_export_writes_merged_weights_equal_to_base_plus_adapter(lora_run, tmp_path, bpe_base):
    from lightcoder.finetune.lora import load_adapter
    from lightcoder.model.hf import load_checkpoint

    assert main(["export", str(lora_run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    merged, _ = load_checkpoint(tmp_path / "hf")
    unmerged = load_adapter(load_checkpoint(bpe_base)[0], lora_run / "adapter")
    tokens = torch.randint(3, 500, (2, 40), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(merged(tokens), unmerged(tokens), atol=1e-5, rtol=1e-5)
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


def test_gguf_export_of_a_run_holds_the_merged_weights(lora_run, tmp_path, bpe_base):
    gguf = pytest.importorskip("gguf")
    from lightcoder.finetune.lora import merged_model
    from lightcoder.model.hf import load_checkpoint

    out = tmp_path / "ft.gguf"
    assert main(["export", str(lora_run), "--format", "gguf", "--out", str(out)]) == 0
    tensors = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    base, _ = load_checkpoint(bpe_base)
    want = merged_model(load_checkpoint(bpe_base)[0], lora_run / "adapter").layers[0].feed_forward.w1.weight
    got = torch.from_numpy(tensors["blk.0.ffn_gate.weight"].data.copy()).reshape(want.shape)
    assert torch.allclose(got, want, atol=1e-6)  # the merged weight, not the base's
    assert not torch.allclose(got, base.layers[0].feed_forward.w1.weight, atol=1e-6)


def test_an_adapter_whose_base_changed_is_refused(lora_run, tmp_path):
    import shutil

    from lightcoder.finetune.deploy import load_finetuned
    from lightcoder.finetune.lora import AdapterMismatchError

    moved = tmp_path / "run"
    shutil.copytree(lora_run / "adapter", moved / "adapter")
    meta = json.loads((moved / "adapter" / "lightcoder.json").read_text())
    meta["base_fingerprint"] = "0" * 16
    (moved / "adapter" / "lightcoder.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterMismatchError, match="changed since fine-tuning"):
        load_finetuned(moved / "adapter")


def test_full_finetune_starts_from_the_base_weights(tmp_path, aix_base, package):
    """--method full through the pretraining loop, on an aiXcoder-layout base (SentencePiece tokenizer.model)."""
    from safetensors.torch import load_file

    out = tmp_path / "full"
    code = main(["finetune", "--base", str(aix_base), "--corpus", str(package), "--out", str(out), "--method", "full",
                 "--train.max_steps", "2", "--train.lr", "1e-3", "--train.min_lr", "1e-4", "--eval.enabled", "false",
                 *TINY])
    assert code == 0
    base = load_file(aix_base / "model.safetensors")
    step0 = load_file(out / "ckpt" / "step_000000" / "model.safetensors")
    final = load_file(out / "ckpt" / "step_000002" / "model.safetensors")
    assert all(torch.equal(step0[k], base[k]) for k in base)  # training began at the released weights
    assert any(not torch.equal(final[k], base[k]) for k in base)
    assert (out / "ckpt" / "step_000002" / "tokenizer.model").is_file()
    from lightcoder.infer.completer import Completer

    assert Completer.load(out).template.name == "aixcoder"


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tmp_path, bpe_base, package, monkeypatch, capsys):
    import os
    import signal

    from lightcoder.finetune import lora_loop

    real, calls = lora_loop.lora_step, []

    def step_then_ctrl_c(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, taken by the loop's handler
        return loss

    out = tmp_path / "ctrl_c"
    monkeypatch.setattr(lora_loop, "lora_step", step_then_ctrl_c)
    argv = ["finetune", "--base", str(bpe_base), "--corpus", str(package), "--out", str(out), "--train.max_steps", "4",
            "--eval.enabled", "false", *TINY]
    assert main(argv) == 130
    assert (out / "ckpt" / "step_000002" / "train_state.pt").is_file() and not (out / "adapter").exists()
    monkeypatch.setattr(lora_loop, "lora_step", real)
    assert main(["finetune", "--out", str(out)]) == 0
    assert "resuming the adapter from" in capsys.readouterr().err
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4 and (out / "adapter").is_dir()


def test_bad_input_is_named(tmp_path, bpe_base, capsys):
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "notes.txt").write_text("no code here\n")
    assert main(["finetune", "--base", str(bpe_base), "--corpus", str(empty), "--out", str(tmp_path / "r1")]) == 1
    err = capsys.readouterr().err
    assert "no usable source files" in err and str(empty) in err and "pass --corpus" in err
    assert main(["finetune", "--base", str(tmp_path), "--corpus", str(empty), "--out", str(tmp_path / "r2")]) == 1
    assert "no config.json" in capsys.readouterr().err
    assert main(["finetune", "--base", str(bpe_base), "--corpus", str(empty), "--out", str(tmp_path / "r3"),
                 "--method", "qlora", "--train.device", "cpu"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
