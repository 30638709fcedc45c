"""torchrun on CPU (gloo): 2 ranks match 1 rank, a killed run resumes exactly, 1 rank resumes a 2-rank run.

One torchrun launch per scenario (tiny model, fp32 so that the comparisons can be tight):
- A: 1 process, global batch 8 in 2 micro-batches of 4 (in-process);
- B: torchrun 2 ranks, DDP, global batch 8 (4 per rank)            -> losses == A within 1e-5;
- C: torchrun 2 ranks, FSDP2, SIGKILLed after its first checkpoint;
  D: the same command again resumes from the newest checkpoint      -> losses == B within 1e-5;
- E: 1 process resumes D's sharded step-12 checkpoint                -> losses == B within 1e-5;
- F: torchrun 2 ranks, FSDP2, train.optimizer muon (each rank gathers, orthogonalizes and keeps its
  rows of every matrix's update)                                      -> losses == 1 process within 1e-3.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightcoder.model.config import get_preset
from lightcoder.train.checkpoint import complete_checkpoints
from lightcoder.train.config import TrainConfig
from lightcoder.train.loop import train

SEQ_LEN, VOCAB, N = 33, 512, 24
MODEL = dict(n_layers=1, max_seq_len=64)  # lc-tiny with one layer
TRAIN = dict(stop_loss_weight=1.0,  # the synthetic windows have no stop token
             batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=2, log_every=1, eval_every=12, eval_batches=1,
             ckpt_every=4, keep_checkpoints=10, schedule_steps=N, max_steps=N, dtype="fp32", seed=3,
             tensorboard=False, peak_tflops=1.0)

pytestmark = pytest.mark.slow


def write_documents(shards_dir: Path, num_train: int = 64, num_valid: int = 8) -> Path:
    """Shards of packed documents `<s> a a+s a+2s ...` (id 1 = <s>), several per window."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", num_train), ("valid", num_valid)):
        stream = []
        while len(stream) < n * SEQ_LEN:
            start, stride, length = rng.integers(3, 40), rng.integers(1, 4), rng.integers(5, 20)
            stream += [1] + [int(3 + (start + stride * i) % 45) for i in range(length)]
        np.asarray(stream[: n * SEQ_LEN], dtype=np.uint16).tofile(shards_dir / f"{split}.bin")
        splits[split] = {"file": f"{split}.bin", "num_windows": n, "num_tokens": n * SEQ_LEN, "num_documents": n}
    index = {"seq_len": SEQ_LEN, "dtype": "uint16", "vocab_size": VOCAB, "splits": splits}
    (shards_dir / "index.json").write_text(json.dumps(index))
    (shards_dir / "DONE").write_text(json.dumps(index))
    return shards_dir


def torchrun(shards: Path, out: Path, parallel: str, **train_overrides) -> list[str]:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "lightcoder.train", "--shards", str(shards), "--out", str(out), "--preset", "lc-tiny",
            "--train.parallel", parallel]
    args += [f"--model.{k}={v}" for k, v in MODEL.items()]
    return args + [f"--train.{k}={v}" for k, v in {**TRAIN, **train_overrides}.items()]


def launch_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_torchrun(shards: Path, out: Path, parallel: str, **train_overrides) -> dict:
    proc = subprocess.run(torchrun(shards, out, parallel, **train_overrides), env=launch_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def losses(out: Path, after: int = 0) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and r["step"] > after}


def assert_close(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=tol), step


def in_process(shards: Path, out: Path, **overrides) -> dict:
    return train(TrainConfig(**{**TRAIN, **overrides}), get_preset("lc-tiny", vocab_size=VOCAB, **MODEL),
                 shards_dir=shards, tokenizer_dir=None, out_dir=out)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_documents(tmp_path_factory.mktemp("shards"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, shards) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ddp")
    return out, run_torchrun(shards, out, "ddp")


def test_two_ranks_match_one_rank_with_the_same_global_batch(tmp_path, shards, two_ranks):
    out, summary = two_ranks
    assert summary["world_size"] == 2 and summary["parallel"] == "ddp" and summary["steps"] == N
    one = in_process(shards, tmp_path, grad_accum=2)  # 8 windows as 2 x 4, as the 2 ranks see them
    assert one["world_size"] == 1
    assert_close(losses(tmp_path), losses(out))
    assert one["val_loss"] == pytest.approx(summary["val_loss"], abs=1e-5)
    assert summary["val_loss"] < summary["initial_val_loss"] - 1.0  # it learns


def test_killed_fsdp_run_resumes_and_reproduces_the_losses(tmp_path, shards, two_ranks):
    out = tmp_path / "fsdp"
    proc = subprocess.Popen(torchrun(shards, out, "fsdp"), env=launch_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not complete_checkpoints_quiet(out / "ckpt", min_step=4) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:  # torchrun and both ranks, mid-training
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    killed_at = max(step for step, _ in complete_checkpoints(out / "ckpt"))
    assert 4 <= killed_at < N, "the run finished before it could be killed"

    resumed = run_torchrun(shards, out, "fsdp")
    assert resumed["resumed_from"] == killed_at and resumed["steps"] == N
    assert_close(losses(out), losses(two_ranks[0]))  # the whole curve: before and after the kill

    # E: one process resumes the 2-rank FSDP checkpoint of step 12 (DCP reshards the model + optimizer)
    single = tmp_path / "single"
    shutil.copytree(out, single)
    for step, path in complete_checkpoints(single / "ckpt"):
        if step > 12:
            shutil.rmtree(path)
    summary = in_process(shards, single, grad_accum=2)
    assert summary["resumed_from"] == 12 and summary["world_size"] == 1
    assert_close(losses(single, after=12), losses(two_ranks[0], after=12))


def test_fsdp_with_muon_matches_one_process(tmp_path, shards):
    summary = run_torchrun(shards, tmp_path / "fsdp", "fsdp", optimizer="muon", ckpt_every=0)
    assert summary["world_size"] == 2 and summary["parallel"] == "fsdp" and summary["steps"] == N
    one = in_process(shards, tmp_path / "one", grad_accum=2, optimizer="muon", ckpt_every=0)
    # the orthogonalization runs in bf16, so a last-bit difference in the reduced gradients can show
    assert_close(losses(tmp_path / "one"), losses(tmp_path / "fsdp"), tol=1e-3)
    assert one["val_loss"] == pytest.approx(summary["val_loss"], abs=1e-3)
    assert summary["val_loss"] < summary["initial_val_loss"] - 1.0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in their own sessions), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def complete_checkpoints_quiet(ckpt_dir: Path, min_step: int) -> bool:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return any(step >= min_step for step, _ in complete_checkpoints(ckpt_dir))
