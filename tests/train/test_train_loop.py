"""The training run end to end on tiny shards: loss goes down, checkpoints, exact resume, bad states."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lightcoder.model.config import get_preset
from lightcoder.model.hf import CheckpointError, load_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.train.budget import TimePlanner, budget_steps, plan_steps, stop_reason
from lightcoder.train.checkpoint import STATE_FILE, complete_checkpoints, load_train_state
from lightcoder.train.config import TrainConfig
from lightcoder.train.loader import WindowLoader
from lightcoder.train.loop import ResumeMismatchError, train, truncate_metrics
from lightcoder.train.precision import resolve_dtype

SEQ_LEN, VOCAB = 33, 512
ALPHABET = 48  # the shards use only ids < ALPHABET, so even unigram learning lowers the loss fast
MODEL = get_preset("lc-tiny", n_layers=1, max_seq_len=64)  # ~60k non-embedding parameters
N = 12  # steps of the "straight" reference run
FAST = dict(batch_size=4, lr=1e-2, min_lr=1e-3, warmup_steps=2, log_every=1, eval_every=4, eval_batches=2,
            stop_loss_weight=1.0,  # the synthetic windows have no stop token
            ckpt_every=0, schedule_steps=N)


def write_shards(shards_dir: Path, *, num_train: int = 96, num_valid: int = 8, seed: int = 0) -> Path:
    """Tiny shards in the packing format: windows of arithmetic sequences mod ALPHABET (easy to learn)."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", num_train), ("valid", num_valid)):
        start, stride = rng.integers(0, ALPHABET, (n, 1)), rng.integers(1, 4, (n, 1))
        windows = ((start + stride * np.arange(SEQ_LEN)) % ALPHABET).astype(np.uint16)
        windows.tofile(shards_dir / f"{split}.bin")
        splits[split] = {"file": f"{split}.bin", "num_windows": n, "num_tokens": n * SEQ_LEN, "num_documents": n}
    index = {"seq_len": SEQ_LEN, "dtype": "uint16", "vocab_size": VOCAB, "splits": splits}
    (shards_dir / "index.json").write_text(json.dumps(index))
    (shards_dir / "DONE").write_text(json.dumps(index))
    return shards_dir


def run(out_dir: Path, shards: Path, **overrides) -> dict:
    return train(TrainConfig(**{**FAST, **overrides}), MODEL, shards_dir=shards, tokenizer_dir=None,
                 out_dir=out_dir)


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def train_losses(out_dir: Path, after: int = -1) -> list[tuple]:
    return [(r["step"], r["loss"], r["lr"], r["tokens"]) for r in records(out_dir) if "loss" in r and r["step"] > after]


def weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(ckpt_dir / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shards) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("straight")
    return out, run(out, shards, max_steps=N)


def test_training_reduces_loss_and_writes_the_run(straight):
    out, summary = straight
    assert summary["steps"] == N and summary["stop_reason"] == "max_steps"
    assert summary["dtype"] == resolve_dtype("auto", torch.device("cpu"))  # train.dtype auto, resolved
    assert summary["val_loss"] < summary["initial_val_loss"] - 1.0
    assert abs(summary["initial_val_loss"] - np.log(VOCAB)) < 0.5  # untrained: about uniform
    rows = records(out)
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, N + 1))
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 4, 8, 12]
    assert set(rows[1]) == {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu",
                            "elapsed_s"}
    assert (out / "loss.png").stat().st_size > 1000
    assert [step for step, _ in complete_checkpoints(out / "ckpt")] == [0, N]


def test_step_zero_is_the_untrained_init(straight):
    out, _ = straight
    model, cfg = load_checkpoint(out / "ckpt" / "step_000000")
    assert cfg == MODEL
    fresh = Transformer(MODEL)
    fresh.init_weights(seed=0)
    for name, value in fresh.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    state = load_train_state(out / "ckpt" / "step_000000")
    assert state["step"] == 0 and state["loader"]["position"] == 0


def test_resume_is_bit_for_bit(tmp_path, shards, straight):
    ref, _ = straight
    k = 5
    first = run(tmp_path, shards, max_steps=k)
    assert first["steps"] == k
    second = run(tmp_path, shards, max_steps=N)
    assert second["resumed_from"] == k and second["steps"] == N
    assert_same_weights(ref / "ckpt" / f"step_{N:06d}", tmp_path / "ckpt" / f"step_{N:06d}")
    assert train_losses(tmp_path, after=k) == train_losses(ref, after=k)
    steps = [r["step"] for r in records(tmp_path) if "loss" in r]
    assert steps == list(range(1, N + 1))  # the curve continues without gaps or duplicates
    assert second["val_loss"] == straight[1]["val_loss"]


def test_auto_resumes_in_the_checkpoints_dtype(tmp_path, shards):
    """A run begun in the dtype auto would not pick here continues in it (exact resume), and says why."""
    other = "bf16" if resolve_dtype("auto", torch.device("cpu")) == "fp32" else "fp32"
    assert run(tmp_path, shards, max_steps=2, dtype=other)["dtype"] == other
    assert run(tmp_path, shards, max_steps=3)["dtype"] == other


def test_ctrl_c_checkpoints_the_current_step_then_resumes_exactly(tmp_path, shards, straight, monkeypatch):
    ref, _ = straight
    calls = {"n": 0}
    next_batch = WindowLoader.next_batch

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step; the step finishes first
        return next_batch(self)

    monkeypatch.setattr(WindowLoader, "next_batch", interrupting)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under a background job
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, shards, max_steps=N)
    monkeypatch.setattr(WindowLoader, "next_batch", next_batch)
    assert complete_checkpoints(tmp_path / "ckpt")[-1][0] == 4
    assert signal.getsignal(signal.SIGINT) == before  # the caller's handler is restored
    summary = run(tmp_path, shards, max_steps=N)
    assert summary["resumed_from"] == 4
    assert_same_weights(ref / "ckpt" / f"step_{N:06d}", tmp_path / "ckpt" / f"step_{N:06d}")


def test_checkpoints_are_pruned_but_step_zero_is_kept(tmp_path, shards):
    run(tmp_path, shards, max_steps=8, ckpt_every=2, keep_checkpoints=2, eval_every=0)
    assert [step for step, _ in complete_checkpoints(tmp_path / "ckpt")] == [0, 6, 8]
    assert all((p / STATE_FILE).is_file() for _, p in complete_checkpoints(tmp_path / "ckpt"))
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")]  # no tmp dirs left


def test_corrupt_newest_checkpoint_is_named(tmp_path, shards):
    run(tmp_path, shards, max_steps=3, eval_every=0)
    newest = tmp_path / "ckpt" / "step_000003"
    state_bytes = (newest / STATE_FILE).read_bytes()
    (newest / STATE_FILE).write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"step_000003.*resume from step_000000"):
        run(tmp_path, shards, max_steps=6, eval_every=0)
    (newest / STATE_FILE).write_bytes(state_bytes)
    for shard in (newest / "dcp").glob("*.distcp"):  # the sharded model + optimizer state
        shard.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=r"step_000003.*resume from step_000000"):
        run(tmp_path, shards, max_steps=6, eval_every=0)
    (newest / STATE_FILE).unlink()  # an incomplete dir is skipped (with a warning): resume from step 0
    with pytest.warns(UserWarning, match="step_000003"):
        summary = run(tmp_path, shards, max_steps=1, eval_every=0)
    assert summary["resumed_from"] == 0


def test_model_config_mismatch_is_a_clear_error(tmp_path, shards):
    run(tmp_path, shards, max_steps=1, eval_every=0)
    other = get_preset("lc-tiny", n_layers=2, max_seq_len=64)
    with pytest.raises(ResumeMismatchError, match=r"n_layers: 1 in the checkpoint, 2 now"):
        train(TrainConfig(**{**FAST, "max_steps": 2}), other, shards_dir=shards, tokenizer_dir=None,
              out_dir=tmp_path)


def test_max_minutes_plans_the_steps_once_and_keeps_the_plan(tmp_path, shards):
    budget = dict(plan_after_steps=1, schedule_steps=0, eval_every=0, schedule="cosine")
    summary = run(tmp_path, shards, max_minutes=0.05, **budget)
    planned = summary["planned_steps"]
    assert planned is not None and planned >= 3
    assert summary["stop_reason"] == "max_minutes" and summary["steps"] <= planned
    state = load_train_state(complete_checkpoints(tmp_path / "ckpt")[-1][1])
    assert state["planned_steps"] == planned
    # A resume with another time budget follows the stored plan (max_steps only bounds the test's time).
    again = run(tmp_path, shards, max_minutes=5.0, max_steps=summary["steps"] + 2, **budget)
    assert again["planned_steps"] == planned


def test_wsd_decays_over_the_last_fraction_of_the_minutes_and_resume_keeps_it(tmp_path, shards):
    budget = dict(schedule_steps=0, eval_every=0, decay_fraction=0.5)
    summary = run(tmp_path, shards, max_minutes=0.04, **budget)
    start, planned = summary["decay_start"], summary["planned_steps"]
    assert summary["schedule"] == "wsd" and start is not None and planned is not None and planned > start
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    # the lr logged at a step is the one its update used: peak up to the decay start, lower after it
    assert all(lr == FAST["lr"] for step, lr in lrs.items() if FAST["warmup_steps"] < step <= start)
    assert all(lr < FAST["lr"] for step, lr in lrs.items() if step > start + 1)
    state = load_train_state(complete_checkpoints(tmp_path / "ckpt")[-1][1])
    assert (state["decay_start"], state["planned_steps"]) == (start, planned)
    again = run(tmp_path, shards, max_minutes=5.0, max_steps=summary["steps"] + 2, **budget)
    assert (again["decay_start"], again["planned_steps"]) == (start, planned)


def test_a_stall_before_the_decay_costs_only_its_own_length():
    """A synthetic clock: 1 s per step, log every 10 steps, 100 s budget, decay over the last 25 %.
    A 12 s stall at step 30 starts the decay 10 steps earlier, and the plan still ends at 100 s."""
    cfg = TrainConfig(max_minutes=100 / 60, log_every=10, eval_every=0, ckpt_every=0, decay_fraction=0.25)
    for stall, decay_start in ((0.0, 80), (12.0, 70)):  # the first log step at or after 75 s
        planner, clock, plan, step = TimePlanner(cfg, start_step=0), 0.0, None, 0
        while plan is None:
            step += 10
            interval = 10.0 + (stall if step == 30 else 0.0)
            clock += interval
            plan = planner.observe(step, clock, interval / 10, {"eval_s": 0.0, "ckpt_s": 0.0})
        assert plan["decay_start"] == decay_start
        # the median step time ignores the stalled interval: the decay fills what is left of 100 s
        assert plan["planned_steps"] - decay_start == pytest.approx(100 - clock, abs=1)


def test_an_injected_stall_still_uses_the_wall_clock_budget(tmp_path, shards, monkeypatch):
    """A real run of 6 s with a 1.5 s stall early on (where the cosine plan would be timed): wsd still
    trains until (nearly) the end of the budget."""
    import time as time_module

    original = WindowLoader.next_batch
    calls = {"n": 0}

    def stalling(self):
        calls["n"] += 1
        if calls["n"] == 14:  # inside the cosine plan's timing window (steps 10..30)
            time_module.sleep(1.5)
        return original(self)

    monkeypatch.setattr(WindowLoader, "next_batch", stalling)
    summary = run(tmp_path, shards, max_minutes=0.1, schedule_steps=0, eval_every=0, log_every=2)
    assert summary["stop_reason"] == "max_minutes" and summary["elapsed_s"] >= 0.85 * 6


def test_cosine_plan_is_fixed_once_from_the_timed_steps():
    cfg = TrainConfig(max_minutes=100 / 60, log_every=10, plan_after_steps=20, eval_every=0, ckpt_every=0,
                      schedule="cosine")
    planner = TimePlanner(cfg, start_step=0)
    assert planner.observe(10, 10.0, 1.0, {"eval_s": 0.0, "ckpt_s": 0.0}) is None  # warm-up interval
    assert planner.observe(20, 20.0, 1.0, {"eval_s": 0.0, "ckpt_s": 0.0}) is None
    plan = planner.observe(30, 30.0, 1.0, {"eval_s": 0.0, "ckpt_s": 0.0})
    assert plan == {"planned_steps": 100, "decay_start": None}


def test_budgets_and_plan_arithmetic():
    cfg = TrainConfig(max_tokens=1000)
    assert budget_steps(cfg, tokens_per_step=300, batches_per_epoch=50) == 4
    assert budget_steps(TrainConfig(), tokens_per_step=300, batches_per_epoch=50) == 50  # one epoch
    assert budget_steps(TrainConfig(max_minutes=1), tokens_per_step=300, batches_per_epoch=50) is None
    minutes = TrainConfig(max_minutes=5, eval_every=0, ckpt_every=0)
    assert plan_steps(10, 0.0, 0.1, minutes, eval_s=0.0, ckpt_s=0.0) == 10 + 3000
    state = {"step": 4, "tokens": 1200, "elapsed_s": 1.0, "planned_steps": None}
    assert stop_reason(state, cfg, 4) == "max_tokens"
    assert stop_reason({**state, "step": 3, "tokens": 900}, cfg, 4) is None


def test_truncate_metrics_keeps_steps_up_to_the_resume_point(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(6)) + '{"step": 6, "lo')
    truncate_metrics(path, 3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 1, 2, 3]


def test_unfinished_shards_are_rejected(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(ValueError, match="lightcoder pack"):
        run(tmp_path, tmp_path / "shards", max_steps=1)


def test_shards_of_another_tokenizer_are_refused_before_training(tmp_path, shards):
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    train_tokenizer(["def f(x):\n    return x + 1\n"] * 20, TokenizerConfig(vocab_size=300)).save(tmp_path / "tok")
    with pytest.raises(ValueError, match=r"vocabulary of 512 tokens but the tokenizer .* has \d+: the shards belong"):
        train(TrainConfig(**{**FAST, "max_steps": 1}), MODEL, shards_dir=shards, tokenizer_dir=tmp_path / "tok",
              out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "ckpt").exists()  # nothing was computed or written


def test_module_entry_point_rejects_unknown_presets_and_keys_before_any_compute(tmp_path, shards):
    from lightcoder.config import ConfigError
    from lightcoder.train.__main__ import main

    base = ["--shards", str(shards), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit):
        main(base + ["--preset", "lc-huge"])
    with pytest.raises(ConfigError, match="train.lrate"):
        main(base + ["--preset", "lc-tiny", "--train.lrate", "1e-3"])
    with pytest.raises(ConfigError, match="model.layers"):
        main(base + ["--preset", "lc-tiny", "--model.layers", "3"])
    assert not (tmp_path / "run").exists()


def test_module_entry_point_trains_and_writes_tensorboard(tmp_path, shards, capsys):
    from lightcoder.train.__main__ import main

    main(["--shards", str(shards), "--out", str(tmp_path), "--preset", "lc-tiny", "--model.n_layers", "1",
          "--train.max_steps", "2", "--train.eval_every", "0", "--train.peak_tflops", "1",
          "--train.stop_loss_weight", "1"])  # the synthetic shards have no stop token
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["world_size"] == 1 and 0 <= summary["mfu"] < 1  # 0 when the machine is busy (rounded)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    model, cfg = load_checkpoint(tmp_path / "ckpt" / "step_000002")  # the HF export of the final model
    assert cfg.vocab_size == VOCAB and cfg.max_seq_len == SEQ_LEN - 1


def test_stream_order_uses_the_index_streams_or_warns(tmp_path, shards):
    with pytest.warns(UserWarning, match="no train streams"):
        run(tmp_path / "a", shards, max_steps=2, eval_every=0, stream_order=True)
    with_streams = write_shards(tmp_path / "shards")
    index = json.loads((with_streams / "index.json").read_text())
    index["splits"]["train"]["streams"] = [[i, 8] for i in range(0, 96, 8)]
    (with_streams / "index.json").write_text(json.dumps(index))
    summary = run(tmp_path / "b", with_streams, max_steps=3, eval_every=0, stream_order=True)
    assert summary["steps"] == 3
    assert load_train_state(tmp_path / "b" / "ckpt" / "step_000003")["loader"]["streams"] is True


def test_flex_attention_on_cpu_is_refused_before_training(tmp_path, shards):
    with pytest.raises(ValueError, match="train.attention='flex' trains on CUDA only"):
        run(tmp_path, shards, max_steps=1, attention="flex", device="cpu")
    with pytest.raises(ValueError, match="train.attention must be one of"):
        TrainConfig(attention="xformers")


def with_stop_id(tmp_path: Path, stop_id: int) -> Path:
    shards = write_shards(tmp_path / f"shards_{stop_id}")
    index = json.loads((shards / "index.json").read_text())
    (shards / "index.json").write_text(json.dumps({**index, "stop_id": stop_id}))
    return shards


def test_stop_loss_weight_changes_only_the_stop_tokens_loss(tmp_path, straight):
    """A weight on a token the data never holds trains exactly like no weight; on a token it holds, not."""
    absent = run(tmp_path / "absent", with_stop_id(tmp_path, ALPHABET + 1), max_steps=N, stop_loss_weight=4.0)
    assert_same_weights(straight[0] / "ckpt" / f"step_{N:06d}", tmp_path / "absent" / "ckpt" / f"step_{N:06d}")
    assert absent["val_loss"] == straight[1]["val_loss"]
    present = with_stop_id(tmp_path, 5)  # id 5 is in most windows
    run(tmp_path / "present", present, max_steps=N, stop_loss_weight=4.0)
    first_weighted, first_plain = train_losses(tmp_path / "present")[0][1], train_losses(straight[0])[0][1]
    assert first_weighted > first_plain  # step 1: same weights, the stop targets count 4 times


def test_stop_loss_weight_without_a_stop_id_is_a_clear_error(tmp_path, shards):
    with pytest.raises(ValueError, match="needs the stop token id.*stop_loss_weight=1"):
        run(tmp_path, shards, max_steps=1, stop_loss_weight=3.0)
    with pytest.raises(ValueError, match="train.stop_loss_weight must be > 0"):
        TrainConfig(stop_loss_weight=0)


def test_a_nan_between_log_steps_is_not_checkpointed(tmp_path, shards, monkeypatch):
    """A NaN loss at step 2 with logs every 5 steps and checkpoints every 3: the step-3 save refuses (it would
    be a NaN checkpoint, and pruning could delete the last good one) and names the bad step."""
    from lightcoder.train.telemetry import LossWatch

    observe = LossWatch.observe

    def nan_at_two(self, step, loss):
        observe(self, step, loss * float("nan") if step == 2 else loss)

    monkeypatch.setattr(LossWatch, "observe", nan_at_two)
    with pytest.raises(FloatingPointError, match="NaN/inf at step 2"):
        run(tmp_path, shards, max_steps=8, log_every=5, ckpt_every=3, keep_checkpoints=1, eval_every=0)
    assert [step for step, _ in complete_checkpoints(tmp_path / "ckpt")] == [0]


def test_a_time_plan_during_a_step_budgets_decay_never_raises_the_lr():
    """max_steps 1000 with max_minutes: the step budget decays from step 802; a time plan fixed at step 850
    keeps that start, so the LR goes on falling instead of jumping back to its peak."""
    from lightcoder.train.budget import keep_running_decay
    from lightcoder.train.optim import lr_at

    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, schedule="wsd", decay_fraction=0.2,
                      max_steps=1000, max_minutes=10)
    plan = keep_running_decay({"planned_steps": 990, "decay_start": 850}, cfg, budget=1000)
    assert plan == {"planned_steps": 990, "decay_start": 802}
    lrs = [lr_at(step, cfg, 1000, None) for step in range(840, 850)]
    lrs += [lr_at(step, cfg, 990, plan["decay_start"]) for step in range(850, 990)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:])) and lrs[-1] == pytest.approx(1e-4)
    assert keep_running_decay({"planned_steps": 500, "decay_start": 400}, cfg, budget=1000)["decay_start"] == 400
